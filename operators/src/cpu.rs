//! What the build assumes of the CPU it runs on.
//!
//! On x86-64 the workspace is compiled for `x86-64-v3` (`.cargo/config.toml`): the compiler may
//! use AVX2, BMI2, FMA and the rest anywhere, and simd-json is compiled for AVX2 rather than
//! choosing at run time. On a CPU without them such a binary would die of an illegal
//! instruction at some arbitrary point; each binary checks first, with [`check`].

/// The x86-64 features this build was compiled to use that the running CPU does not have, by
/// their `target_feature` names. Empty on a suitable CPU and on other architectures.
pub fn missing_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut missing = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        // Every feature `x86-64-v2` and `x86-64-v3` add to the x86-64 baseline.
        macro_rules! require {
            ($($feature:tt),*) => {$(
                if cfg!(target_feature = $feature) && !std::arch::is_x86_feature_detected!($feature) {
                    missing.push($feature);
                }
            )*};
        }
        require!(
            "sse3",
            "ssse3",
            "sse4.1",
            "sse4.2",
            "popcnt",
            "cmpxchg16b",
            "avx",
            "avx2",
            "bmi1",
            "bmi2",
            "fma",
            "f16c",
            "lzcnt",
            "movbe",
            "xsave"
        );
    }
    missing
}

/// `Err` with a message for the user when the CPU lacks a feature the build uses: the binary
/// must stop before running any code compiled for them.
pub fn check(program: &str) -> Result<(), String> {
    match missing_features().as_slice() {
        [] => Ok(()),
        missing => Err(refusal(program, missing)),
    }
}

fn refusal(program: &str, missing: &[&str]) -> String {
    format!(
        "{program}: this build is compiled for x86-64-v3 CPUs and this CPU lacks {}; \
         build it for this machine with RUSTFLAGS=\"-C target-cpu=native\" cargo build --release \
         (README, \"Building for another CPU\")",
        missing.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_machine_runs_what_it_builds() {
        // The tests run on the machine that compiled them, so every feature the build assumes
        // is there; a false "missing" would stop every binary at start.
        assert_eq!(missing_features(), Vec::<&str>::new());
        assert_eq!(check("dutyflow"), Ok(()));
    }

    #[test]
    fn a_refusal_names_what_is_missing_and_what_to_do() {
        let text = refusal("dutyflow", &["avx2", "bmi2"]);
        assert!(text.starts_with("dutyflow: "), "{text}");
        assert!(text.contains("lacks avx2, bmi2;"), "{text}");
        assert!(
            text.contains("RUSTFLAGS=\"-C target-cpu=native\" cargo build --release"),
            "{text}"
        );
    }
}
