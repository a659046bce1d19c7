//! The S3 objects a job reads and the encryption of the objects it writes, as the checks
//! need them.

use serde_json::Value;

use super::{
    NormalizedSettings, PreparedSettings, group_name, group_settings_with_destination,
    output_groups,
};

/// An object named by an `s3://` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Object {
    pub uri: String,
    pub bucket: String,
    pub key: String,
}

impl S3Object {
    /// Parses `s3://bucket/key`; `None` for other schemes or a URI without a key.
    pub fn parse(uri: &str) -> Option<Self> {
        let (bucket, key) = uri.strip_prefix("s3://")?.split_once('/')?;
        (!bucket.is_empty() && !key.is_empty()).then(|| Self {
            uri: uri.to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    pub fn arn(&self) -> String {
        format!("arn:aws:s3:::{}/{}", self.bucket, self.key)
    }
}

/// Server-side encryption that MediaConvert requests for the objects of one output group.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct WriteEncryption {
    /// `SERVER_SIDE_ENCRYPTION_S3` or `SERVER_SIDE_ENCRYPTION_KMS`; `None` when the group
    /// sets no encryption, so S3 applies the bucket's default.
    pub encryption_type: Option<String>,
    pub kms_key_arn: Option<String>,
}

impl WriteEncryption {
    /// Value of the `x-amz-server-side-encryption` header S3 receives.
    pub fn header(&self) -> Option<&'static str> {
        match self.encryption_type.as_deref()? {
            "SERVER_SIDE_ENCRYPTION_KMS" => Some("aws:kms"),
            _ => Some("AES256"),
        }
    }
}

impl NormalizedSettings {
    /// Inputs read from S3 (`Inputs[].FileInput`), in order.
    pub fn s3_inputs(&self) -> Vec<S3Object> {
        let inputs = self.json.get("inputs").and_then(Value::as_array);
        inputs
            .into_iter()
            .flatten()
            .filter_map(|input| input.get("fileInput").and_then(Value::as_str))
            .filter_map(S3Object::parse)
            .collect()
    }
}

impl PreparedSettings {
    /// Encryption of the writes of output group `group`.
    pub fn write_encryption(&self, group: &str) -> WriteEncryption {
        let Some(json) = self.json.as_object() else {
            return WriteEncryption::default();
        };
        let encryption = output_groups(json)
            .iter()
            .enumerate()
            .find(|(index, candidate)| group_name(candidate, *index) == group)
            .and_then(|(_, found)| group_settings_with_destination(found))
            .and_then(|inner| inner.get("destinationSettings"))
            .and_then(|destination| destination.get("s3Settings"))
            .and_then(|s3| s3.get("encryption"));
        let text = |member: &str| {
            encryption
                .and_then(|block| block.get(member))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        WriteEncryption {
            encryption_type: text("encryptionType"),
            kms_key_arn: text("kmsKeyArn"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn s3_uris_parsed() {
        let object = S3Object::parse("s3://example-media-in/a/trailer.mp4").unwrap();
        assert_eq!(object.bucket, "example-media-in");
        assert_eq!(object.key, "a/trailer.mp4");
        assert_eq!(object.arn(), "arn:aws:s3:::example-media-in/a/trailer.mp4");
        assert_eq!(S3Object::parse("s3://bucket-only"), None);
        assert_eq!(S3Object::parse("https://example.com/a.mp4"), None);
    }

    #[test]
    fn inputs_and_group_encryption_read() {
        let settings = json!({
            "Inputs": [{"FileInput": "s3://in/a.mp4"}, {"FileInput": "https://cdn/b.mp4"}],
            "OutputGroups": [{
                "Name": "Files",
                "OutputGroupSettings": {"Type": "FILE_GROUP_SETTINGS", "FileGroupSettings": {
                    "Destination": "s3://out/a/",
                    "DestinationSettings": {"S3Settings": {"Encryption": {"EncryptionType": "SERVER_SIDE_ENCRYPTION_KMS", "KmsKeyArn": "arn:k"}}}
                }},
                "Outputs": [{"ContainerSettings": {"Container": "MP4"}}]
            }]
        });
        let normalized = NormalizedSettings::parse(&settings, false).unwrap();
        let inputs = normalized.s3_inputs();
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].key, "a.mp4");
        let prepared = PreparedSettings {
            json: serde_json::Value::Object(normalized.json.clone()),
            encrypted_groups: vec![],
        };
        let write = prepared.write_encryption("Files");
        assert_eq!(write.header(), Some("aws:kms"));
        assert_eq!(write.kms_key_arn.as_deref(), Some("arn:k"));
        assert_eq!(prepared.write_encryption("Other").header(), None);
    }
}
