pub mod calendar;
pub mod decode;
pub mod error;
pub mod money;
pub mod rates;
pub mod reference;
pub mod table;

#[cfg(test)]
pub(crate) fn config_dir_for_tests() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}
