//! Evaluation of IAM policy documents used as resource policies: KMS key policies, S3
//! bucket policies and role trust policies.
//!
//! The evaluator decides one request (principal, action, resource, context) the way AWS
//! evaluates a resource policy: an explicit `Deny` wins, then an `Allow`. A condition
//! whose key the request context does not determine makes the decision
//! [`Decision::Undecided`], naming the condition, rather than a guess either way.
//! Identity policies are left to `iam:SimulatePrincipalPolicy`.

mod condition;
mod document;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use document::{Document, Effect, ParseError, Statement};

/// The identity a request is made by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// An IAM role or user (or the account root), with the account it belongs to.
    Aws { arn: String, account: String },
    /// An AWS service such as `mediaconvert.amazonaws.com`.
    Service(String),
}

impl Principal {
    /// Builds an AWS principal from an IAM ARN, taking the account from the ARN.
    pub fn aws(arn: &str) -> Self {
        let account = arn.split(':').nth(4).unwrap_or_default().to_string();
        Principal::Aws {
            arn: arn.to_string(),
            account,
        }
    }

    /// Account of an AWS principal; empty for a service.
    pub fn account(&self) -> &str {
        match self {
            Principal::Aws { account, .. } => account,
            Principal::Service(_) => "",
        }
    }
}

/// Condition keys of a request. Keys are compared without regard to case, as AWS does.
///
/// A key is either present with its values, known to be absent, or unknown. Only a
/// condition on an unknown key leaves a decision open.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    values: BTreeMap<String, Vec<String>>,
    absent: Vec<String>,
}

impl RequestContext {
    /// Sets `key` to one value.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.values
            .insert(key.to_ascii_lowercase(), vec![value.to_string()]);
        self
    }

    /// Sets `key` to several values, as for `kms:EncryptionContextKeys`.
    pub fn with_values(mut self, key: &str, values: Vec<String>) -> Self {
        self.values.insert(key.to_ascii_lowercase(), values);
        self
    }

    /// Records that the request carries no `key`, so conditions on it can be decided.
    pub fn without(mut self, key: &str) -> Self {
        self.absent.push(key.to_ascii_lowercase());
        self
    }

    /// Records that the request carries no key starting with `prefix`.
    pub fn without_prefix(self, prefix: &str) -> Self {
        self.without(&format!("{prefix}*"))
    }

    fn lookup(&self, key: &str) -> Lookup<'_> {
        let key = key.to_ascii_lowercase();
        if let Some(values) = self.values.get(&key) {
            return Lookup::Present(values);
        }
        let absent = self
            .absent
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => key.starts_with(prefix),
                None => *pattern == key,
            });
        if absent {
            Lookup::Absent
        } else {
            Lookup::Unknown
        }
    }
}

enum Lookup<'a> {
    Present(&'a [String]),
    Absent,
    Unknown,
}

/// One request to decide against a policy.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    pub action: &'a str,
    pub resource: &'a str,
    pub context: &'a RequestContext,
}

/// Route by which an `Allow` reached the principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The statement names the principal itself, or every principal (`*`).
    Principal,
    /// The statement names the principal's account (its root), which delegates the
    /// decision to the IAM policies of that account.
    Account,
}

/// Result of evaluating a policy for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A `Deny` statement applies; nothing else can allow the request.
    Deny { statement: String },
    /// An `Allow` statement applies and no `Deny` does.
    Allow { statement: String, grant: Grant },
    /// No statement applies, so the policy does not allow the request.
    NotAllowed,
    /// A statement may apply, but its condition depends on a key the request context
    /// does not determine.
    Undecided {
        statement: String,
        condition: String,
    },
}

/// Whether a statement applies to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Applies {
    Yes(Grant),
    No,
    /// The condition named could not be decided.
    Maybe(String),
}

impl Document {
    /// Decides `request` against every statement. An applying `Deny` wins over everything,
    /// and an undecided `Deny` wins over any `Allow`. A grant to the principal itself is
    /// reported before a grant to its account.
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        let mut allow: Option<(String, Grant)> = None;
        let mut undecided_deny = None;
        let mut undecided_allow = None;
        for statement in self.statements() {
            let applies = statement.applies(request);
            let label = statement.label();
            match (statement.effect, applies) {
                (_, Applies::No) => {}
                (Effect::Deny, Applies::Yes(_)) => return Decision::Deny { statement: label },
                (Effect::Deny, Applies::Maybe(condition)) => {
                    undecided_deny.get_or_insert((label, condition));
                }
                (Effect::Allow, Applies::Maybe(condition)) => {
                    undecided_allow.get_or_insert((label, condition));
                }
                (Effect::Allow, Applies::Yes(grant)) => {
                    let better = allow.as_ref().is_none_or(|(_, held)| {
                        *held == Grant::Account && grant == Grant::Principal
                    });
                    if better {
                        allow = Some((label, grant));
                    }
                }
            }
        }
        if let Some((statement, condition)) = undecided_deny {
            return Decision::Undecided {
                statement,
                condition,
            };
        }
        if let Some((statement, grant)) = allow {
            return Decision::Allow { statement, grant };
        }
        match undecided_allow {
            Some((statement, condition)) => Decision::Undecided {
                statement,
                condition,
            },
            None => Decision::NotAllowed,
        }
    }
}

/// Matches `value` against an IAM pattern, where `*` matches any run of characters and
/// `?` any single character.
pub fn wildcard_match(pattern: &str, value: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let value: Vec<char> = value.chars().collect();
    // Iterative matching with backtracking to the last `*`.
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == value[v]) {
            p += 1;
            v += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, v));
            p += 1;
        } else if let Some((star_p, star_v)) = star {
            p = star_p + 1;
            v = star_v + 1;
            star = Some((star_p, star_v + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}
