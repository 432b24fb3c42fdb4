//! Error and warning codes, and the `Issue` that carries one to the carrier.
//!
//! Every code is stable (it is part of `assessment/v1` and `dlq/v1`), names one rule, and maps
//! to the pipeline stage that detects it. An `Issue` always carries the JSON path of the field
//! and a message a carrier's developer can act on.

use std::borrow::Cow;
use std::fmt;

/// The stage of the pipeline where an exception is detected (`dutyflow.error.stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Decode,
    Validate,
    Assess,
    Store,
}

impl Stage {
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Validate => "validate",
            Stage::Assess => "assess",
            Stage::Store => "store",
        }
    }
}

macro_rules! codes {
    ($($variant:ident => $name:literal, $stage:ident;)*) => {
        /// Every error and warning code dutyflow emits.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant,)* }

        impl Code {
            /// All codes, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The UPPER_SNAKE name used on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// The stage that detects this code.
            pub const fn stage(self) -> Stage {
                match self { $(Code::$variant => Stage::$stage,)* }
            }

            /// Parses a wire name back into a code.
            pub fn from_name(name: &str) -> Option<Code> {
                match name { $($name => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    // Message level (contract §1): one exception for the whole message.
    MalformedJson => "MALFORMED_JSON", Decode;
    SchemaViolation => "SCHEMA_VIOLATION", Decode;
    UnsupportedSchema => "UNSUPPORTED_SCHEMA", Decode;
    // Level 1: format and completeness.
    MissingField => "MISSING_FIELD", Validate;
    InvalidManifestId => "INVALID_MANIFEST_ID", Validate;
    InvalidCarrierCode => "INVALID_CARRIER_CODE", Validate;
    InvalidTripNumber => "INVALID_TRIP_NUMBER", Validate;
    InvalidPort => "INVALID_PORT", Validate;
    InvalidDate => "INVALID_DATE", Validate;
    InvalidTrackingNumber => "INVALID_TRACKING_NUMBER", Validate;
    TrackingCheckDigit => "TRACKING_CHECK_DIGIT", Validate;
    InvalidCategory => "INVALID_CATEGORY", Validate;
    InvalidName => "INVALID_NAME", Validate;
    InvalidAddress => "INVALID_ADDRESS", Validate;
    InvalidCountry => "INVALID_COUNTRY", Validate;
    InvalidWeight => "INVALID_WEIGHT", Validate;
    InvalidDescription => "INVALID_DESCRIPTION", Validate;
    InvalidHts => "INVALID_HTS", Validate;
    InvalidQuantity => "INVALID_QUANTITY", Validate;
    InvalidValue => "INVALID_VALUE", Validate;
    InvalidCurrency => "INVALID_CURRENCY", Validate;
    // Level 2: business logic.
    DuplicateTrackingNumber => "DUPLICATE_TRACKING_NUMBER", Validate;
    UnknownFxRate => "UNKNOWN_FX_RATE", Assess;
    NoRateRegime => "NO_RATE_REGIME", Assess;
    NoHtsRate => "NO_HTS_RATE", Assess;
    ValueAbovePostalLimit => "VALUE_ABOVE_POSTAL_LIMIT", Assess;
    // Warnings: recorded on accepted packages, never reject.
    ZeroDeclaredValue => "ZERO_DECLARED_VALUE", Validate;
    SpecificMethodUnavailable => "SPECIFIC_METHOD_UNAVAILABLE", Assess;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One error or warning about one field: `{"code", "field", "message"}` on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub code: Code,
    /// JSON path of the offending field, e.g. `$.packages[2].items[0].value`.
    pub field: Cow<'static, str>,
    pub message: String,
}

impl Issue {
    pub fn new(code: Code, field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Issue {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Where a field sits in the manifest; turned into a JSON path only when an issue is raised,
/// so the happy path never formats a string.
#[derive(Debug, Clone, Copy)]
pub enum Path<'k> {
    Root(&'static str),
    Header(&'static str),
    Package(usize, &'k str),
    Item(usize, usize, &'k str),
}

impl Path<'_> {
    pub fn render(self) -> Cow<'static, str> {
        match self {
            Path::Root(s) | Path::Header(s) => Cow::Borrowed(s),
            Path::Package(p, "") => Cow::Owned(format!("$.packages[{p}]")),
            Path::Package(p, rest) => Cow::Owned(format!("$.packages[{p}].{rest}")),
            Path::Item(p, i, "") => Cow::Owned(format!("$.packages[{p}].items[{i}]")),
            Path::Item(p, i, rest) => Cow::Owned(format!("$.packages[{p}].items[{i}].{rest}")),
        }
    }
}

/// A collector of issues for one scope (a header or a package).
#[derive(Debug, Default, Clone)]
pub struct Issues(pub Vec<Issue>);

impl Issues {
    #[inline]
    pub fn push<'p>(&mut self, code: Code, path: impl Into<Path<'p>>, message: impl Into<String>) {
        self.0.push(Issue::new(code, path.into().render(), message));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_code_exists_with_its_exact_name() {
        for name in [
            "MALFORMED_JSON",
            "SCHEMA_VIOLATION",
            "UNSUPPORTED_SCHEMA",
            "MISSING_FIELD",
            "INVALID_TRACKING_NUMBER",
            "TRACKING_CHECK_DIGIT",
            "DUPLICATE_TRACKING_NUMBER",
            "INVALID_COUNTRY",
            "INVALID_CURRENCY",
            "UNKNOWN_FX_RATE",
            "INVALID_VALUE",
            "INVALID_PORT",
            "INVALID_CARRIER_CODE",
            "INVALID_HTS",
            "INVALID_DATE",
            "NO_RATE_REGIME",
        ] {
            let code = Code::from_name(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(code.as_str(), name);
        }
    }

    #[test]
    fn names_are_unique_upper_snake() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()));
            assert!(c.as_str().bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
        }
    }

    #[test]
    fn paths_render_as_json_paths() {
        assert_eq!(Path::Item(2, 0, "value").render(), "$.packages[2].items[0].value");
        assert_eq!(
            Path::Package(1, "shipper.country").render(),
            "$.packages[1].shipper.country"
        );
        assert_eq!(Path::Header("$.trip.arrival_time").render(), "$.trip.arrival_time");
    }
}
