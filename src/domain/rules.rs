//! Input rules that several entry points (CLI, admin forms, job payloads, manifests) share,
//! each written once.

use std::ops::RangeInclusive;

use super::Invalid;

/// A registered model's name: 1–100 characters after trimming, no `#` (it marks the broken
/// image of a gold check in exports) and no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelName(String);

impl ModelName {
    /// Checks `raw` (surrounding spaces are dropped); `field` names it in the error.
    pub fn parse(field: &str, raw: &str) -> Result<ModelName, Invalid> {
        let name = raw.trim();
        if name.is_empty()
            || name.chars().count() > 100
            || name.contains('#')
            || name.chars().any(char::is_control)
        {
            return Err(Invalid::new(
                field,
                "a model name must be 1-100 characters without '#'",
            ));
        }
        Ok(ModelName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// How many seeds (images) per prompt one generation or distillation request may ask for.
pub const SEEDS_PER_PROMPT: RangeInclusive<i64> = 1..=64;

/// Checks a number of seeds per prompt.
pub fn check_seeds_per_prompt(n: i64) -> Result<(), Invalid> {
    if SEEDS_PER_PROMPT.contains(&n) {
        Ok(())
    } else {
        Err(Invalid::new(
            "seeds",
            format!(
                "seeds per prompt must be {}-{} (got {n})",
                SEEDS_PER_PROMPT.start(),
                SEEDS_PER_PROMPT.end()
            ),
        ))
    }
}

/// Sampling settings a generation request starts from when it names none: the CLI's
/// defaults and the admin form's pre-filled values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingDefaults {
    pub steps: usize,
    pub guidance: f64,
    pub width: usize,
    pub height: usize,
    pub dtype: &'static str,
}

pub const DEFAULT_SAMPLING: SamplingDefaults = SamplingDefaults {
    steps: 30,
    guidance: 5.0,
    width: 1024,
    height: 1024,
    dtype: "f16",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_trimmed_and_checked_once() {
        assert_eq!(
            ModelName::parse("model", "  ssd-1b ").unwrap().as_str(),
            "ssd-1b"
        );
        for bad in ["", "   ", "a#b", "x\u{0}y", &"m".repeat(101)] {
            let e = ModelName::parse("student", bad).unwrap_err();
            assert_eq!(e.field, "student", "{bad:?}");
        }
        assert!(ModelName::parse("model", &"é".repeat(100)).is_ok());
    }

    #[test]
    fn seeds_per_prompt_are_1_to_64() {
        assert!(check_seeds_per_prompt(1).is_ok());
        assert!(check_seeds_per_prompt(64).is_ok());
        for bad in [0, -1, 65, i64::MAX] {
            let e = check_seeds_per_prompt(bad).unwrap_err();
            assert!(e.message.contains("1-64"), "{e}");
        }
    }
}
