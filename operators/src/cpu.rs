//! What the build assumes of the CPU it runs on.
//!
//! On x86-64 the workspace is compiled for `x86-64-v3` (`.cargo/config.toml`): the compiler may
//! use AVX2, BMI2, FMA and the rest anywhere, and simd-json is compiled for AVX2 rather than
//! choosing at run time. On a CPU without them such a binary would die of an illegal
//! instruction at some arbitrary point; each binary checks first, with [`check`].
//!
//! The check is best effort: it is itself compiled for the same CPU, as is everything that
//! runs before `main` (the allocator included). On a CPU with AVX but without AVX2 or BMI2
//! (2011–2013) it runs and refuses; on one without AVX at all the process may die before it.
//!
//! The CPU is asked directly (CPUID): `is_x86_feature_detected!` answers `true` for every
//! feature the build was compiled with, whatever the CPU, so it cannot tell.

/// Defines [`LEVEL_FEATURES`] and [`assumed_features`] from one list (`cfg!` needs each name
/// written out).
macro_rules! level_features {
    ($($feature:tt),* $(,)?) => {
        /// Every feature `x86-64-v2` and `x86-64-v3` add to the x86-64 baseline, by
        /// `target_feature` name.
        pub const LEVEL_FEATURES: &[&str] = &[$($feature),*];

        /// The features of [`LEVEL_FEATURES`] this build was compiled to use.
        pub fn assumed_features() -> Vec<&'static str> {
            #[allow(unused_mut)]
            let mut assumed = Vec::new();
            $(
                if cfg!(all(target_arch = "x86_64", target_feature = $feature)) {
                    assumed.push($feature);
                }
            )*
            assumed
        }
    };
}

level_features!(
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
    "xsave",
);

/// The features this build was compiled to use that the running CPU does not have. Empty on a
/// suitable CPU and on other architectures.
pub fn missing_features() -> Vec<&'static str> {
    let assumed = assumed_features();
    if assumed.is_empty() {
        return assumed;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = x86::Cpu::read();
        assumed.into_iter().filter(|f| !cpu.has(f)).collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("features are only assumed on x86-64")
}

/// `Err` with a message for the user when the CPU lacks a feature the build uses: the binary
/// must stop before it runs code compiled for them.
pub fn check(program: &str) -> Result<(), String> {
    match missing_features().as_slice() {
        [] => Ok(()),
        missing => Err(refusal(program, missing)),
    }
}

fn refusal(program: &str, missing: &[&str]) -> String {
    format!(
        "{program}: this build is compiled for a CPU with {} and this CPU lacks {}; \
         build it for this machine with RUSTFLAGS=\"-C target-cpu=native\" cargo build --release \
         (README, \"Building for another CPU\")",
        assumed_features().join(", "),
        missing.join(", ")
    )
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};

    /// The CPU's answers to CPUID that name the features of [`super::LEVEL_FEATURES`].
    pub struct Cpu {
        /// Leaf 1, ECX.
        basic: u32,
        /// Leaf 7 (sub-leaf 0), EBX.
        extended: u32,
        /// Leaf 0x8000_0001, ECX.
        amd: u32,
        /// The OS saves the AVX registers (OSXSAVE, and XCR0 bits 1 and 2): without that the
        /// AVX family is unusable even on a CPU that has it.
        avx_state: bool,
    }

    impl Cpu {
        #[allow(unused_unsafe)]
        pub fn read() -> Cpu {
            // SAFETY: CPUID exists on every x86-64 CPU; leaves above the maximum are not read.
            let (max, max_amd) = unsafe { (__cpuid(0).eax, __cpuid(0x8000_0000).eax) };
            let basic = unsafe { __cpuid(1).ecx };
            let extended = if max >= 7 {
                unsafe { __cpuid_count(7, 0).ebx }
            } else {
                0
            };
            let amd = if max_amd >= 0x8000_0001 {
                unsafe { __cpuid(0x8000_0001).ecx }
            } else {
                0
            };
            // SAFETY: XGETBV exists when the OS has set OSXSAVE (leaf 1, ECX bit 27).
            let avx_state = basic & (1 << 27) != 0 && unsafe { _xgetbv(0) } & 0b110 == 0b110;
            Cpu {
                basic,
                extended,
                amd,
                avx_state,
            }
        }

        pub fn has(&self, feature: &str) -> bool {
            let bit = |word: u32, b: u32| word & (1 << b) != 0;
            match feature {
                "sse3" => bit(self.basic, 0),
                "ssse3" => bit(self.basic, 9),
                "fma" => bit(self.basic, 12) && self.avx_state,
                "cmpxchg16b" => bit(self.basic, 13),
                "sse4.1" => bit(self.basic, 19),
                "sse4.2" => bit(self.basic, 20),
                "movbe" => bit(self.basic, 22),
                "popcnt" => bit(self.basic, 23),
                "xsave" => bit(self.basic, 26),
                "avx" => bit(self.basic, 28) && self.avx_state,
                "f16c" => bit(self.basic, 29) && self.avx_state,
                "bmi1" => bit(self.extended, 3),
                "avx2" => bit(self.extended, 5) && self.avx_state,
                "bmi2" => bit(self.extended, 8),
                "lzcnt" => bit(self.amd, 5),
                _ => false,
            }
        }
    }
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

    /// The CPUID reading agrees with the kernel's, feature by feature (Linux names some of
    /// them differently), for features present and absent alike.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn cpuid_agrees_with_the_kernel() {
        let info = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
        let flags: Vec<&str> = info
            .lines()
            .find_map(|l| l.strip_prefix("flags"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, f)| f.split_whitespace().collect())
            .expect("a flags line");
        let cpu = x86::Cpu::read();
        for &feature in LEVEL_FEATURES {
            let linux = match feature {
                "sse3" => "pni",
                "sse4.1" => "sse4_1",
                "sse4.2" => "sse4_2",
                "cmpxchg16b" => "cx16",
                "lzcnt" => "abm",
                other => other,
            };
            assert_eq!(cpu.has(feature), flags.contains(&linux), "{feature} ({linux})");
        }
        assert!(!cpu.has("no-such-feature"));
    }

    #[test]
    fn a_refusal_names_what_is_missing_and_what_to_do() {
        let text = refusal("dutyflow", &["avx2", "bmi2"]);
        assert!(text.starts_with("dutyflow: "), "{text}");
        assert!(text.contains("this CPU lacks avx2, bmi2;"), "{text}");
        assert!(
            text.contains("RUSTFLAGS=\"-C target-cpu=native\" cargo build --release"),
            "{text}"
        );
    }
}
