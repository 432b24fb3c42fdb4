//! Warns when simd-json would be compiled without SIMD code: an x86-64 build that enables
//! neither AVX2 nor SSE4.2 and does not pick them at run time (`runtime-detection`). That is
//! what a build without the project's `.cargo/config.toml` gives (`RUSTFLAGS` set for another
//! reason, `cargo install`): correct, but the parser is several times slower.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let features = var("CARGO_CFG_TARGET_FEATURE");
    let simd = features.split(',').any(|f| f == "avx2" || f == "sse4.2");
    let runtime = std::env::var_os("CARGO_FEATURE_RUNTIME_DETECTION").is_some();
    if var("CARGO_CFG_TARGET_ARCH") == "x86_64" && !simd && !runtime {
        println!(
            "cargo:warning=simd-json is built without SIMD (neither AVX2 nor SSE4.2 enabled): \
             build from the repository root (its .cargo/config.toml), or with \
             RUSTFLAGS=\"-C target-cpu=native\", or with --features runtime-detection \
             (README, \"Building for another CPU\")"
        );
    }
}
