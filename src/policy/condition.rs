//! `Condition` blocks: operators over condition keys of the request context.

use std::fmt;

use serde_json::Value;

use super::document::string_list;
use super::{Lookup, RequestContext, wildcard_match};

/// Comparison a condition operator applies to values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comparison {
    StringEquals {
        ignore_case: bool,
    },
    StringLike,
    /// ARN operators; `ArnEquals` accepts wildcards like `ArnLike`.
    ArnLike,
    Bool,
    Null,
}

/// Whether all or any of a multivalued key's values must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetOperator {
    /// No prefix: the key is single-valued, so any of its values matching is enough.
    Single,
    ForAnyValue,
    ForAllValues,
}

/// One key test of a condition block, such as `StringEquals kms:ViaService [...]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// Operator as written in the policy, for messages.
    operator: String,
    /// `None` for an operator the evaluator does not implement (numeric, date, IP).
    comparison: Option<Comparison>,
    negated: bool,
    if_exists: bool,
    set: SetOperator,
    key: String,
    values: Vec<String>,
}

impl Condition {
    /// Parses a whole `Condition` element: `{operator: {key: value or [values]}}`.
    pub fn parse_block(value: &Value) -> Option<Vec<Self>> {
        let mut conditions = Vec::new();
        for (operator, tests) in value.as_object()? {
            for (key, values) in tests.as_object()? {
                conditions.push(Self::new(operator, key, string_list(values)?));
            }
        }
        Some(conditions)
    }

    fn new(operator: &str, key: &str, values: Vec<String>) -> Self {
        let (set, rest) = if let Some(rest) = operator.strip_prefix("ForAnyValue:") {
            (SetOperator::ForAnyValue, rest)
        } else if let Some(rest) = operator.strip_prefix("ForAllValues:") {
            (SetOperator::ForAllValues, rest)
        } else {
            (SetOperator::Single, operator)
        };
        let (if_exists, base) = match rest.strip_suffix("IfExists") {
            Some(base) => (true, base),
            None => (false, rest),
        };
        let (comparison, negated) = match base {
            "StringEquals" => (Some(Comparison::StringEquals { ignore_case: false }), false),
            "StringNotEquals" => (Some(Comparison::StringEquals { ignore_case: false }), true),
            "StringEqualsIgnoreCase" => {
                (Some(Comparison::StringEquals { ignore_case: true }), false)
            }
            "StringNotEqualsIgnoreCase" => {
                (Some(Comparison::StringEquals { ignore_case: true }), true)
            }
            "StringLike" => (Some(Comparison::StringLike), false),
            "StringNotLike" => (Some(Comparison::StringLike), true),
            "ArnEquals" | "ArnLike" => (Some(Comparison::ArnLike), false),
            "ArnNotEquals" | "ArnNotLike" => (Some(Comparison::ArnLike), true),
            "Bool" => (Some(Comparison::Bool), false),
            "Null" => (Some(Comparison::Null), false),
            _ => (None, false),
        };
        Self {
            operator: operator.to_string(),
            comparison,
            negated,
            if_exists,
            set,
            key: key.to_string(),
            values,
        }
    }

    /// Decides the condition; `None` when it depends on a key the context does not
    /// determine, or uses an operator the evaluator does not implement.
    pub fn evaluate(&self, context: &RequestContext) -> Option<bool> {
        let comparison = self.comparison?;
        let lookup = context.lookup(&self.key);
        if comparison == Comparison::Null {
            let wants_absent = self.values.iter().any(|value| value == "true");
            return match lookup {
                Lookup::Present(_) => Some(!wants_absent),
                Lookup::Absent => Some(wants_absent),
                Lookup::Unknown => None,
            };
        }
        let present = match lookup {
            Lookup::Present(values) => values,
            Lookup::Absent => return Some(self.when_absent()),
            Lookup::Unknown => return None,
        };
        let matches_one = |value: &String| {
            self.values
                .iter()
                .any(|pattern| compare(comparison, pattern, value))
        };
        let matched = match self.set {
            SetOperator::ForAllValues => present.iter().all(matches_one),
            SetOperator::Single | SetOperator::ForAnyValue => present.iter().any(matches_one),
        };
        Some(matched != self.negated)
    }

    /// Result for a request without the key: `IfExists` and negated operators match, as
    /// does `ForAllValues` over an empty set; everything else does not.
    fn when_absent(&self) -> bool {
        self.if_exists || self.negated || self.set == SetOperator::ForAllValues
    }
}

fn compare(comparison: Comparison, pattern: &str, value: &str) -> bool {
    match comparison {
        Comparison::StringEquals { ignore_case: false } => pattern == value,
        Comparison::StringEquals { ignore_case: true } => pattern.eq_ignore_ascii_case(value),
        Comparison::StringLike | Comparison::ArnLike => wildcard_match(pattern, value),
        Comparison::Bool => pattern.eq_ignore_ascii_case(value),
        Comparison::Null => false,
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:?}", self.operator, self.key, self.values)
    }
}
