use super::*;

const ACCOUNT: &str = "111122223333";
const OTHER_ACCOUNT: &str = "444455556666";
const ROLE: &str = "arn:aws:iam::111122223333:role/MediaConvertRole";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// The key policy the KMS console writes for a new key with one key user.
const DEFAULT_KEY_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Id": "key-consolepolicy-3",
  "Statement": [
    {
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
      "Action": "kms:*",
      "Resource": "*"
    },
    {
      "Sid": "Allow access for Key Administrators",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:role/KeyAdmin"},
      "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
                 "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*",
                 "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"],
      "Resource": "*"
    },
    {
      "Sid": "Allow use of the key",
      "Effect": "Allow",
      "Principal": {"AWS": ["arn:aws:iam::111122223333:role/Transcoder"]},
      "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                 "kms:DescribeKey"],
      "Resource": "*"
    },
    {
      "Sid": "Allow attachment of persistent resources",
      "Effect": "Allow",
      "Principal": {"AWS": ["arn:aws:iam::111122223333:role/Transcoder"]},
      "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
      "Resource": "*",
      "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    }
  ]
}"#;

/// The policy of the AWS managed key `aws/s3`.
const AWS_S3_KEY_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Id": "auto-s3-2",
  "Statement": [
    {
      "Sid": "Allow access through S3 for all principals in the account that are authorized to use S3",
      "Effect": "Allow",
      "Principal": {"AWS": "*"},
      "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                 "kms:DescribeKey"],
      "Resource": "*",
      "Condition": {
        "StringEquals": {
          "kms:CallerAccount": "111122223333",
          "kms:ViaService": "s3.us-east-1.amazonaws.com"
        }
      }
    },
    {
      "Sid": "Allow direct access to key metadata to the account",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
      "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
      "Resource": "*"
    }
  ]
}"#;

fn via_s3(principal: &Principal) -> RequestContext {
    RequestContext::default()
        .with("kms:CallerAccount", principal.account())
        .with("kms:ViaService", "s3.us-east-1.amazonaws.com")
        .with(
            "aws:PrincipalArn",
            match principal {
                Principal::Aws { arn, .. } => arn,
                Principal::Service(service) => service,
            },
        )
        .without_prefix("kms:EncryptionContext:")
}

fn decide(policy: &str, principal: &str, action: &str) -> Decision {
    let principal = Principal::aws(principal);
    let context = via_s3(&principal);
    decide_with(policy, &principal, action, KEY, &context)
}

fn decide_with(
    policy: &str,
    principal: &Principal,
    action: &str,
    resource: &str,
    context: &RequestContext,
) -> Decision {
    let document = Document::parse(policy).expect("policy parses");
    document.evaluate(&Request {
        principal,
        action,
        resource,
        context,
    })
}

fn grant(decision: &Decision) -> Option<Grant> {
    match decision {
        Decision::Allow { grant, .. } => Some(*grant),
        _ => None,
    }
}

#[test]
fn default_policy_delegates_to_account() {
    let decision = decide(DEFAULT_KEY_POLICY, ROLE, "kms:GenerateDataKey");
    assert_eq!(grant(&decision), Some(Grant::Account), "{decision:?}");
}

#[test]
fn default_policy_names_key_user() {
    let user = "arn:aws:iam::111122223333:role/Transcoder";
    let decision = decide(
        DEFAULT_KEY_POLICY,
        user,
        "kms:GenerateDataKeyWithoutPlaintext",
    );
    assert_eq!(
        decision,
        Decision::Allow {
            statement: "Allow use of the key".into(),
            grant: Grant::Principal
        }
    );
}

#[test]
fn default_policy_ignores_other_accounts() {
    let stranger = "arn:aws:iam::444455556666:role/MediaConvertRole";
    assert_eq!(
        decide(DEFAULT_KEY_POLICY, stranger, "kms:Encrypt"),
        Decision::NotAllowed
    );
}

#[test]
fn aws_managed_s3_key_allows_account_through_s3() {
    let decision = decide(AWS_S3_KEY_POLICY, ROLE, "kms:GenerateDataKey");
    assert_eq!(grant(&decision), Some(Grant::Principal), "{decision:?}");
}

#[test]
fn aws_managed_s3_key_refuses_direct_use() {
    let principal = Principal::aws(ROLE);
    let context = via_s3(&principal).with("kms:ViaService", "ec2.us-east-1.amazonaws.com");
    let decision = decide_with(AWS_S3_KEY_POLICY, &principal, "kms:Encrypt", KEY, &context);
    assert_eq!(decision, Decision::NotAllowed);
}

#[test]
fn aws_managed_s3_key_refuses_other_account() {
    let stranger = "arn:aws:iam::444455556666:role/Reader";
    assert_eq!(
        decide(AWS_S3_KEY_POLICY, stranger, "kms:Decrypt"),
        Decision::NotAllowed
    );
}

#[test]
fn cross_account_key_delegates_to_other_account() {
    let policy = format!(
        r#"{{"Statement": [
          {{"Sid": "Owner", "Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::{OTHER_ACCOUNT}:root"}}, "Action": "kms:*", "Resource": "*"}},
          {{"Sid": "MediaAccount", "Effect": "Allow", "Principal": {{"AWS": "{ACCOUNT}"}},
            "Action": ["kms:Encrypt", "kms:GenerateDataKey*"], "Resource": "*"}}
        ]}}"#
    );
    let encrypt = decide(&policy, ROLE, "kms:GenerateDataKey");
    assert_eq!(
        encrypt,
        Decision::Allow {
            statement: "MediaAccount".into(),
            grant: Grant::Account
        }
    );
    assert_eq!(decide(&policy, ROLE, "kms:Decrypt"), Decision::NotAllowed);
}

#[test]
fn explicit_deny_wins_over_allow() {
    let policy = format!(
        r#"{{"Statement": [
          {{"Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}}, "Action": "kms:*", "Resource": "*"}},
          {{"Sid": "NoDataKeys", "Effect": "Deny", "Principal": "*", "Action": "kms:GenerateDataKey*", "Resource": "*"}}
        ]}}"#
    );
    assert_eq!(
        decide(&policy, ROLE, "kms:GenerateDataKey"),
        Decision::Deny {
            statement: "NoDataKeys".into()
        }
    );
    assert_eq!(
        grant(&decide(&policy, ROLE, "kms:Encrypt")),
        Some(Grant::Principal)
    );
}

#[test]
fn conditional_deny_applies_only_when_met() {
    let policy = r#"{"Statement": [
      {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
      {"Sid": "OnlyThroughS3", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
       "Condition": {"StringNotEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}}
    ]}"#;
    let principal = Principal::aws(ROLE);
    let through_s3 = via_s3(&principal);
    let decision = decide_with(policy, &principal, "kms:Encrypt", KEY, &through_s3);
    assert_eq!(grant(&decision), Some(Grant::Account), "{decision:?}");

    let direct = via_s3(&principal).with("kms:ViaService", "lambda.us-east-1.amazonaws.com");
    let decision = decide_with(policy, &principal, "kms:Encrypt", KEY, &direct);
    assert_eq!(
        decision,
        Decision::Deny {
            statement: "OnlyThroughS3".into()
        }
    );
}

#[test]
fn undecidable_deny_condition_is_undecided() {
    let policy = r#"{"Statement": [
      {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
      {"Sid": "OnlyFromVpce", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
       "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}}}
    ]}"#;
    let decision = decide(policy, ROLE, "kms:Encrypt");
    let Decision::Undecided {
        statement,
        condition,
    } = decision
    else {
        panic!("expected an undecided result, got {decision:?}");
    };
    assert_eq!(statement, "OnlyFromVpce");
    assert!(condition.contains("aws:SourceVpce"), "{condition}");
}

#[test]
fn unsupported_operator_is_undecided() {
    let policy = r#"{"Statement": [
      {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*",
       "Condition": {"NumericLessThan": {"kms:CallerAccount": "5"}}}
    ]}"#;
    let decision = decide(policy, ROLE, "kms:Encrypt");
    assert!(
        matches!(&decision, Decision::Undecided { condition, .. } if condition.contains("NumericLessThan")),
        "{decision:?}"
    );
}

#[test]
fn not_principal_deny_spares_listed_role() {
    let policy = format!(
        r#"{{"Statement": [
          {{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::{ACCOUNT}:root"}}, "Action": "kms:*", "Resource": "*"}},
          {{"Sid": "OnlyAdmins", "Effect": "Deny", "NotPrincipal": {{"AWS": ["arn:aws:iam::{ACCOUNT}:role/KeyAdmin", "arn:aws:iam::{ACCOUNT}:root"]}},
            "Action": "kms:*", "Resource": "*"}}
        ]}}"#
    );
    assert_eq!(
        decide(&policy, ROLE, "kms:Encrypt"),
        Decision::Deny {
            statement: "OnlyAdmins".into()
        }
    );
    let admin = "arn:aws:iam::111122223333:role/KeyAdmin";
    assert_eq!(
        grant(&decide(&policy, admin, "kms:Encrypt")),
        Some(Grant::Account)
    );
}

#[test]
fn not_principal_without_account_still_denies() {
    let policy = format!(
        r#"{{"Statement": [
          {{"Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}}, "Action": "kms:*", "Resource": "*"}},
          {{"Sid": "OnlyRole", "Effect": "Deny", "NotPrincipal": {{"AWS": "{ROLE}"}}, "Action": "kms:*", "Resource": "*"}}
        ]}}"#
    );
    // AWS also checks the account of the request against NotPrincipal, and it is not listed.
    assert_eq!(
        decide(&policy, ROLE, "kms:Encrypt"),
        Decision::Deny {
            statement: "OnlyRole".into()
        }
    );
}

#[test]
fn wildcard_and_not_action() {
    let policy = format!(
        r#"{{"Statement": [
          {{"Sid": "AllButDecrypt", "Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}}, "NotAction": "kms:Decrypt", "Resource": "*"}}
        ]}}"#
    );
    assert!(grant(&decide(&policy, ROLE, "kms:GenerateDataKey")).is_some());
    assert_eq!(decide(&policy, ROLE, "kms:Decrypt"), Decision::NotAllowed);

    let generate = format!(
        r#"{{"Statement": {{"Effect": "Allow", "Principal": {{"AWS": "{ROLE}"}}, "Action": "KMS:generate*", "Resource": "*"}}}}"#
    );
    assert!(grant(&decide(&generate, ROLE, "kms:GenerateDataKey")).is_some());
    assert_eq!(decide(&generate, ROLE, "kms:Encrypt"), Decision::NotAllowed);
}

#[test]
fn resource_must_match() {
    let policy = format!(
        r#"{{"Statement": [{{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "{KEY}"}}]}}"#
    );
    assert!(grant(&decide(&policy, ROLE, "kms:Encrypt")).is_some());
    let principal = Principal::aws(ROLE);
    let other = "arn:aws:kms:us-east-1:111122223333:key/other";
    let decision = decide_with(
        &policy,
        &principal,
        "kms:Encrypt",
        other,
        &via_s3(&principal),
    );
    assert_eq!(decision, Decision::NotAllowed);
}

const BUCKET_REQUIRES_KMS: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "DenyWrongEncryption", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
     "Resource": "arn:aws:s3:::example-media-out/*",
     "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}},
    {"Sid": "DenyMissingEncryption", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
     "Resource": "arn:aws:s3:::example-media-out/*",
     "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}},
    {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
     "Resource": ["arn:aws:s3:::example-media-out", "arn:aws:s3:::example-media-out/*"],
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
  ]
}"#;

fn put_object(policy: &str, context: RequestContext) -> Decision {
    let principal = Principal::aws(ROLE);
    let context = context.with("aws:SecureTransport", "true");
    decide_with(
        policy,
        &principal,
        "s3:PutObject",
        "arn:aws:s3:::example-media-out/trailer/*",
        &context,
    )
}

#[test]
fn bucket_policy_denies_other_encryption() {
    let sse_s3 = RequestContext::default()
        .with("s3:x-amz-server-side-encryption", "AES256")
        .without("s3:x-amz-server-side-encryption-aws-kms-key-id");
    assert_eq!(
        put_object(BUCKET_REQUIRES_KMS, sse_s3),
        Decision::Deny {
            statement: "DenyWrongEncryption".into()
        }
    );
    let sse_kms = RequestContext::default()
        .with("s3:x-amz-server-side-encryption", "aws:kms")
        .with("s3:x-amz-server-side-encryption-aws-kms-key-id", KEY);
    assert_eq!(
        put_object(BUCKET_REQUIRES_KMS, sse_kms),
        Decision::NotAllowed
    );
}

#[test]
fn bucket_policy_denies_missing_header() {
    let none = RequestContext::default()
        .without("s3:x-amz-server-side-encryption")
        .without("s3:x-amz-server-side-encryption-aws-kms-key-id");
    // StringNotEquals also matches an absent key, so the first Deny decides.
    assert!(matches!(
        put_object(BUCKET_REQUIRES_KMS, none),
        Decision::Deny { .. }
    ));
}

#[test]
fn bucket_policy_requiring_other_key_denies() {
    let policy = r#"{"Statement": [
      {"Sid": "RequireArchiveKey", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
       "Resource": "arn:aws:s3:::example-media-out/*",
       "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id":
         "arn:aws:kms:us-east-1:111122223333:key/5678abcd-56ab-78cd-90ef-5678901234ab"}}}
    ]}"#;
    let sse_kms = RequestContext::default()
        .with("s3:x-amz-server-side-encryption", "aws:kms")
        .with("s3:x-amz-server-side-encryption-aws-kms-key-id", KEY);
    assert!(matches!(put_object(policy, sse_kms), Decision::Deny { .. }));
}

const MEDIACONVERT_TRUST: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Principal": {"Service": ["mediaconvert.amazonaws.com", "lambda.amazonaws.com"]},
    "Action": "sts:AssumeRole",
    "Condition": {"StringEquals": {"aws:SourceAccount": "111122223333"}}
  }]
}"#;

fn assume(policy: &str, service: &str) -> Decision {
    let principal = Principal::Service(service.into());
    let context = RequestContext::default().with("aws:SourceAccount", ACCOUNT);
    decide_with(policy, &principal, "sts:AssumeRole", ROLE, &context)
}

#[test]
fn trust_policy_names_service() {
    assert!(grant(&assume(MEDIACONVERT_TRUST, "mediaconvert.amazonaws.com")).is_some());
    assert_eq!(
        assume(MEDIACONVERT_TRUST, "ec2.amazonaws.com"),
        Decision::NotAllowed
    );
}

#[test]
fn unparsable_policies_rejected() {
    assert!(matches!(Document::parse("{"), Err(ParseError::Json(_))));
    assert!(matches!(
        Document::parse(r#"{"Version": "2012-10-17"}"#),
        Err(ParseError::NoStatement)
    ));
    let maybe = r#"{"Statement": [{"Effect": "Maybe", "Action": "*"}]}"#;
    assert!(matches!(
        Document::parse(maybe),
        Err(ParseError::Effect { .. })
    ));
}

#[test]
fn wildcards_match_like_iam() {
    let cases = [
        ("kms:*", "kms:Encrypt", true),
        ("kms:Generate*", "kms:GenerateDataKey", true),
        ("kms:Generate*", "kms:Encrypt", false),
        ("s3:?utObject", "s3:PutObject", true),
        (
            "arn:aws:s3:::bucket/*/out",
            "arn:aws:s3:::bucket/a/b/out",
            true,
        ),
        (
            "arn:aws:s3:::bucket/*/out",
            "arn:aws:s3:::bucket/a/b/outx",
            false,
        ),
        ("*", "", true),
        ("", "x", false),
    ];
    for (pattern, value, expected) in cases {
        assert_eq!(
            wildcard_match(pattern, value),
            expected,
            "{pattern} ~ {value}"
        );
    }
}
