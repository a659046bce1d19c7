//! Parsing of policy documents and matching of one statement against a request.

use serde_json::Value;

use super::condition::Condition;
use super::{Applies, Grant, Principal, Request, wildcard_match};

/// Failure to read a policy document.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("policy is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("policy has no Statement")]
    NoStatement,
    #[error("statement {statement} has Effect {value:?}, expected Allow or Deny")]
    Effect { statement: String, value: String },
    #[error("statement {statement} has an invalid {field}: {value}")]
    Field {
        statement: String,
        field: &'static str,
        value: String,
    },
}

/// A parsed policy document.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    statements: Vec<Statement>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// Principals named in a `Principal` or `NotPrincipal` element.
#[derive(Clone, Debug, Default, PartialEq)]
struct Principals {
    /// `"*"` or `{"AWS": "*"}`: every principal.
    anyone: bool,
    aws: Vec<String>,
    service: Vec<String>,
}

/// One statement of a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// `Sid`, or `#N` (1-based position) for statements without one.
    label: String,
    pub effect: Effect,
    principal: Option<Principals>,
    not_principal: Option<Principals>,
    action: Option<Vec<String>>,
    not_action: Option<Vec<String>>,
    resource: Option<Vec<String>>,
    not_resource: Option<Vec<String>>,
    conditions: Vec<Condition>,
}

impl Document {
    /// Parses a policy document. `Statement` may be one object or a list.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_str(text)?;
        let statements = match value.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(object @ Value::Object(_)) => vec![object.clone()],
            _ => return Err(ParseError::NoStatement),
        };
        let statements = statements
            .iter()
            .enumerate()
            .map(|(index, statement)| Statement::parse(index, statement))
            .collect::<Result<_, _>>()?;
        Ok(Self { statements })
    }

    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// Finds a statement by its label (`Sid` or position).
    pub fn statement(&self, label: &str) -> Option<&Statement> {
        self.statements
            .iter()
            .find(|statement| statement.label == label)
    }
}

impl Statement {
    fn parse(index: usize, value: &Value) -> Result<Self, ParseError> {
        let label = match value.get("Sid").and_then(Value::as_str) {
            Some(sid) if !sid.is_empty() => sid.to_string(),
            _ => format!("#{}", index + 1),
        };
        let effect = match value.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            other => {
                return Err(ParseError::Effect {
                    statement: label,
                    value: other.unwrap_or_default().to_string(),
                });
            }
        };
        let field_error = |field: &'static str, value: &Value| ParseError::Field {
            statement: label.clone(),
            field,
            value: value.to_string(),
        };
        let strings = |field: &'static str| -> Result<Option<Vec<String>>, ParseError> {
            value
                .get(field)
                .map(|element| string_list(element).ok_or_else(|| field_error(field, element)))
                .transpose()
        };
        let principals = |field: &'static str| -> Result<Option<Principals>, ParseError> {
            value
                .get(field)
                .map(|element| {
                    Principals::parse(element).ok_or_else(|| field_error(field, element))
                })
                .transpose()
        };
        let conditions = match value.get("Condition") {
            None => Vec::new(),
            Some(element) => {
                Condition::parse_block(element).ok_or_else(|| field_error("Condition", element))?
            }
        };
        Ok(Self {
            effect,
            principal: principals("Principal")?,
            not_principal: principals("NotPrincipal")?,
            action: strings("Action")?,
            not_action: strings("NotAction")?,
            resource: strings("Resource")?,
            not_resource: strings("NotResource")?,
            conditions,
            label,
        })
    }

    /// `Sid`, or the statement's position for statements without one.
    pub fn label(&self) -> String {
        self.label.clone()
    }

    /// Returns the statement's conditions as text, such as
    /// `StringNotEquals s3:x-amz-server-side-encryption ["aws:kms"]`.
    pub fn conditions_text(&self) -> String {
        let conditions: Vec<String> = self.conditions.iter().map(ToString::to_string).collect();
        conditions.join(" and ")
    }

    pub(super) fn applies(&self, request: &Request<'_>) -> Applies {
        let Some(grant) = self.principal_grant(request.principal) else {
            return Applies::No;
        };
        if !self.action_matches(request.action) || !self.resource_matches(request.resource) {
            return Applies::No;
        }
        let mut undecided = None;
        for condition in &self.conditions {
            match condition.evaluate(request.context) {
                Some(true) => {}
                Some(false) => return Applies::No,
                None => {
                    undecided.get_or_insert_with(|| condition.to_string());
                }
            }
        }
        match undecided {
            Some(condition) => Applies::Maybe(condition),
            None => Applies::Yes(grant),
        }
    }

    fn principal_grant(&self, principal: &Principal) -> Option<Grant> {
        if let Some(principals) = &self.principal {
            return principals.grant_to(principal);
        }
        match &self.not_principal {
            // NotPrincipal exempts a role only when the role and its account are both
            // listed, because AWS checks each identity of the request against the list.
            Some(excluded) => match principal {
                Principal::Aws { account, .. } => {
                    let role_listed =
                        excluded.grant_to(principal) == Some(Grant::Principal) && !excluded.anyone;
                    let account_listed = excluded.names_account(account);
                    (!(role_listed && account_listed)).then_some(Grant::Principal)
                }
                Principal::Service(_) => {
                    (excluded.grant_to(principal).is_none()).then_some(Grant::Principal)
                }
            },
            // Identity policies have no principal element; they apply to their holder.
            None => Some(Grant::Principal),
        }
    }

    fn action_matches(&self, action: &str) -> bool {
        let action = action.to_ascii_lowercase();
        let matches = |patterns: &Vec<String>| {
            patterns
                .iter()
                .any(|pattern| wildcard_match(&pattern.to_ascii_lowercase(), &action))
        };
        match (&self.action, &self.not_action) {
            (Some(patterns), _) => matches(patterns),
            (None, Some(patterns)) => !matches(patterns),
            (None, None) => false,
        }
    }

    fn resource_matches(&self, resource: &str) -> bool {
        let matches = |patterns: &Vec<String>| {
            patterns
                .iter()
                .any(|pattern| wildcard_match(pattern, resource))
        };
        match (&self.resource, &self.not_resource) {
            (Some(patterns), _) => matches(patterns),
            (None, Some(patterns)) => !matches(patterns),
            // Trust policies carry no Resource: the role itself is the resource.
            (None, None) => true,
        }
    }
}

impl Principals {
    fn parse(value: &Value) -> Option<Self> {
        match value {
            Value::String(text) if text == "*" => Some(Self {
                anyone: true,
                ..Self::default()
            }),
            Value::Object(map) => {
                let mut principals = Self::default();
                for (kind, entries) in map {
                    let entries = string_list(entries)?;
                    match kind.as_str() {
                        "AWS" => {
                            principals.anyone |= entries.iter().any(|entry| entry == "*");
                            principals.aws.extend(entries);
                        }
                        "Service" => principals.service.extend(entries),
                        // Federated and canonical users never match a role or a service.
                        _ => {}
                    }
                }
                Some(principals)
            }
            _ => None,
        }
    }

    fn names_account(&self, account: &str) -> bool {
        self.aws
            .iter()
            .any(|entry| entry == account || *entry == format!("arn:aws:iam::{account}:root"))
    }

    fn grant_to(&self, principal: &Principal) -> Option<Grant> {
        match principal {
            Principal::Service(service) => (self.anyone
                || self.service.iter().any(|entry| entry == service))
            .then_some(Grant::Principal),
            Principal::Aws { arn, account } => {
                if self.anyone || self.aws.iter().any(|entry| entry == arn) {
                    Some(Grant::Principal)
                } else if self.names_account(account) {
                    Some(Grant::Account)
                } else {
                    None
                }
            }
        }
    }
}

/// Reads a string or a list of strings.
pub(super) fn string_list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(text) => Some(vec![text.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Some(text.clone()),
                Value::Bool(flag) => Some(flag.to_string()),
                Value::Number(number) => Some(number.to_string()),
                _ => None,
            })
            .collect(),
        Value::Bool(flag) => Some(vec![flag.to_string()]),
        Value::Number(number) => Some(vec![number.to_string()]),
        _ => None,
    }
}
