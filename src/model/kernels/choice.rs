//! Which kernel multiplies the quantized matrices, chosen at run time so
//! that one binary serves every CPU: the fastest one the CPU has by
//! default, any one on request (`PIE_EDIT_KERNEL`), so that each kernel's
//! exactness tests run on every machine that has its features.

use std::fmt;

use anyhow::{Result, bail};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The environment variable that forces a kernel, as its
/// [`Kernel::name`].
pub const KERNEL_ENV: &str = "PIE_EDIT_KERNEL";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// candle's own kernels, for any CPU (ARM included): Q4 matrices are
    /// re-quantized to Q8_0 at load and rows padded to a multiple of 256.
    Generic,
    /// Our tile kernel on AVX2, FMA and F16C (`vpmaddubsw`): x86-64 CPUs
    /// since 2013 (Intel Haswell, AMD Zen).
    Avx2,
    /// Our tile kernel on AVX512-VNNI (`vpdpbusd`): Intel Ice Lake and
    /// Sapphire Rapids, AMD Zen 4 and later.
    #[value(name = "avx512vnni")]
    Avx512Vnni,
}

impl Kernel {
    /// Fastest first: where a CPU has several, the first one it has is the
    /// default.
    pub const ALL: [Kernel; 3] = [Kernel::Avx512Vnni, Kernel::Avx2, Kernel::Generic];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Generic => "generic",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512Vnni => "avx512vnni",
        }
    }

    /// What the CPU must have, in words (for errors and skipped tests).
    pub fn needs(self) -> &'static str {
        match self {
            Kernel::Generic => "nothing",
            Kernel::Avx2 => "AVX2, FMA and F16C",
            Kernel::Avx512Vnni => "AVX512F, AVX512BW and AVX512-VNNI",
        }
    }

    /// Whether this CPU runs the kernel.
    pub fn supported(self) -> bool {
        match self {
            Kernel::Generic => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        Self::ALL
            .into_iter()
            .find(|k| k.supported())
            .unwrap_or(Kernel::Generic)
    }

    /// The kernel to load a model with: `forced` if given, else the one
    /// named by `PIE_EDIT_KERNEL`, else [`Kernel::best`]. A forced kernel
    /// that this CPU cannot run is an error, not a quiet fallback: the
    /// point of forcing one is to test or measure that path.
    pub fn resolve(forced: Option<Kernel>) -> Result<Kernel> {
        let kernel = match (forced, std::env::var(KERNEL_ENV)) {
            (Some(kernel), _) => kernel,
            (None, Ok(name)) if !name.trim().is_empty() => Self::parse(&name)?,
            (None, _) => return Ok(Self::best()),
        };
        if !kernel.supported() {
            bail!(
                "the {} kernel needs {}, which this CPU lacks (it runs: {})",
                kernel.name(),
                kernel.needs(),
                Self::ALL
                    .iter()
                    .filter(|k| k.supported())
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(kernel)
    }

    pub fn parse(name: &str) -> Result<Kernel> {
        let name = name.trim();
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{KERNEL_ENV}={name:?} names no kernel; the kernels are generic, avx2 and avx512vnni"
                )
            })
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_the_best_is_supported() {
        for k in Kernel::ALL {
            assert_eq!(Kernel::parse(k.name()).unwrap(), k);
            assert_eq!(Kernel::parse(&k.name().to_uppercase()).unwrap(), k);
        }
        assert!(Kernel::parse("neon").is_err());
        assert!(Kernel::best().supported());
        assert!(Kernel::Generic.supported());
        // A forced kernel is taken as it is, or refused with a reason.
        for k in Kernel::ALL {
            match Kernel::resolve(Some(k)) {
                Ok(got) => assert_eq!(got, k),
                Err(e) => {
                    assert!(!k.supported());
                    assert!(e.to_string().contains(k.needs()), "{e}");
                }
            }
        }
    }
}
