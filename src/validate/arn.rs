//! Parsing of the ARNs a job names: role, KMS key or alias, queue.

use std::fmt;

/// The parts of an ARN: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

/// Rejection of an ARN, with the expected format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArnError {
    pub expected: &'static str,
    pub problem: String,
}

impl fmt::Display for ArnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; expected {}", self.problem, self.expected)
    }
}

const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

const ROLE_FORMAT: &str =
    "arn:aws:iam::ACCOUNT:role/NAME, such as arn:aws:iam::111122223333:role/MediaConvertRole";
const KEY_FORMAT: &str =
    "arn:aws:kms:REGION:ACCOUNT:key/KEY_ID or arn:aws:kms:REGION:ACCOUNT:alias/NAME";
const QUEUE_FORMAT: &str = "a queue name or arn:aws:mediaconvert:REGION:ACCOUNT:queues/NAME";

impl<'a> Arn<'a> {
    /// Splits an ARN into its parts, checking the partition and the account id.
    pub fn parse(text: &'a str, expected: &'static str) -> Result<Self, ArnError> {
        let error = |problem: String| ArnError { expected, problem };
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts[..] else {
            return Err(error(format!(
                "{text:?} does not have the six parts of an ARN"
            )));
        };
        if prefix != "arn" || !PARTITIONS.contains(&partition) {
            return Err(error(format!("{text:?} does not start with arn:aws:")));
        }
        if !account.is_empty() && !is_account_id(account) {
            return Err(error(format!(
                "{text:?} has account {account:?}, which is not 12 digits"
            )));
        }
        Ok(Self {
            partition,
            service,
            region,
            account,
            resource,
        })
    }
}

fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Reports whether `text` looks like an AWS region name such as `us-east-1`.
pub fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 3
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
        && parts[0].len() == 2
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// Checks an IAM role ARN, including roles with a path (`role/service/Name`).
pub fn parse_role(text: &str) -> Result<Arn<'_>, ArnError> {
    let arn = Arn::parse(text, ROLE_FORMAT)?;
    let name = arn.resource.strip_prefix("role/").unwrap_or_default();
    let name_ok = name
        .rsplit('/')
        .next()
        .is_some_and(|last| !last.is_empty() && last.len() <= 64)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
    if arn.service != "iam" || !arn.region.is_empty() || arn.account.is_empty() || !name_ok {
        return Err(ArnError {
            expected: ROLE_FORMAT,
            problem: format!("{text:?} is not an IAM role ARN"),
        });
    }
    Ok(arn)
}

/// Checks a KMS key or alias ARN.
pub fn parse_key(text: &str) -> Result<Arn<'_>, ArnError> {
    let arn = Arn::parse(text, KEY_FORMAT)?;
    let resource_ok = match arn.resource.split_once('/') {
        Some(("key", id)) => {
            // Multi-Region keys have ids of the form mrk-HEX.
            let hex = id.strip_prefix("mrk-").unwrap_or(id);
            !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        }
        Some(("alias", name)) => !name.is_empty(),
        _ => false,
    };
    if arn.service != "kms" || !is_region(arn.region) || arn.account.is_empty() || !resource_ok {
        return Err(ArnError {
            expected: KEY_FORMAT,
            problem: format!("{text:?} is not a KMS key or alias ARN"),
        });
    }
    Ok(arn)
}

/// Checks a queue given as a name or an ARN; returns the ARN's region when it has one.
pub fn parse_queue(text: &str) -> Result<Option<&str>, ArnError> {
    if !text.starts_with("arn:") {
        let name_ok = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        return if name_ok {
            Ok(None)
        } else {
            Err(ArnError {
                expected: QUEUE_FORMAT,
                problem: format!("{text:?} is not a valid queue name"),
            })
        };
    }
    let arn = Arn::parse(text, QUEUE_FORMAT)?;
    if arn.service != "mediaconvert"
        || !is_region(arn.region)
        || !arn.resource.starts_with("queues/")
    {
        return Err(ArnError {
            expected: QUEUE_FORMAT,
            problem: format!("{text:?} is not a MediaConvert queue ARN"),
        });
    }
    Ok(Some(arn.region))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        assert!(parse_role("arn:aws:iam::111122223333:role/MediaConvertRole").is_ok());
        assert!(
            parse_role("arn:aws:iam::111122223333:role/service-role/MediaConvert_Default_Role")
                .is_ok()
        );
        assert!(parse_role("arn:aws-cn:iam::111122223333:role/x").is_ok());
        for bad in [
            "MediaConvertRole",
            "arn:aws:iam::11112222333:role/MediaConvertRole",
            "arn:aws:iam:us-east-1:111122223333:role/MediaConvertRole",
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:s3:::111122223333:role/x",
        ] {
            assert!(parse_role(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn key_arns() {
        let arn = parse_key(
            "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        )
        .unwrap();
        assert_eq!(arn.region, "us-west-2");
        assert!(parse_key("arn:aws:kms:us-east-1:111122223333:alias/media").is_ok());
        assert!(
            parse_key(
                "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
            )
            .is_ok()
        );
        for bad in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/media",
            "arn:aws:kms::111122223333:key/1234abcd",
            "arn:aws:kms:us-east-1:111122223333:secret/x",
        ] {
            assert!(parse_key(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn queues() {
        assert_eq!(parse_queue("Default"), Ok(None));
        assert_eq!(
            parse_queue("arn:aws:mediaconvert:us-east-1:111122223333:queues/Default"),
            Ok(Some("us-east-1"))
        );
        assert!(parse_queue("my queue").is_err());
        assert!(parse_queue("arn:aws:mediaconvert:us-east-1:111122223333:presets/x").is_err());
    }

    #[test]
    fn regions() {
        assert!(is_region("us-east-1"));
        assert!(is_region("us-gov-west-1"));
        assert!(is_region("ap-southeast-2"));
        assert!(!is_region("useast1"));
        assert!(!is_region("us-east-"));
        assert!(!is_region("US-east-x"));
    }
}
