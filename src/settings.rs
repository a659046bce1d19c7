//! Lossless handling of MediaConvert `JobSettings` and injection of output encryption.
//!
//! Users paste settings in the console/CLI spelling (`OutputGroups`) or in the REST
//! spelling (`outputGroups`). MediaConvert's REST API, which the SDK speaks, names every
//! member of `JobSettings` by its model name with the first letter lowered (checked against
//! the botocore model, `mediaconvert/2017-08-29/service-2.json`), so normalizing means
//! lowering the first letter of each member name. Four members are maps whose keys the
//! user chooses (selector names such as `Audio Selector 1`); those keys pass unchanged.
//! Values are never touched, and unknown members pass through, so MediaConvert judges them.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::api::EncryptionSpec;

mod objects;

pub use objects::{S3Object, WriteEncryption};

/// Members of `JobSettings` (at any depth) whose values are maps keyed by user-chosen names.
const USER_KEYED_MAPS: [&str; 4] = [
    "audioSelectors",
    "audioSelectorGroups",
    "captionSelectors",
    "dynamicAudioSelectors",
];

/// Top-level members of `JobSettings`, in REST spelling.
const JOB_SETTINGS_MEMBERS: [&str; 15] = [
    "adAvailOffset",
    "availBlanking",
    "colorConversion3DLUTSettings",
    "esam",
    "extendedDataServices",
    "followSource",
    "inputs",
    "kantarWatermark",
    "motionImageInserter",
    "motionImageInserters",
    "nielsenConfiguration",
    "nielsenNonLinearWatermark",
    "outputGroups",
    "timecodeConfig",
    "timedMetadataInsertion",
];

/// Members of `OutputGroupSettings` whose object carries a `destination`.
const GROUP_SETTINGS_WITH_DESTINATION: [&str; 5] = [
    "fileGroupSettings",
    "hlsGroupSettings",
    "dashIsoGroupSettings",
    "cmafGroupSettings",
    "msSmoothGroupSettings",
];

#[derive(Debug, Error, PartialEq)]
pub enum Error {
    #[error(
        "spec.settings must be a JSON object with MediaConvert JobSettings (Inputs, OutputGroups), found {found}"
    )]
    SettingsNotAnObject { found: &'static str },

    #[error("{path} must be an object, found {found}; remove it or write it as an object")]
    NotAnObject { found: &'static str, path: String },

    #[error(
        "spec.settings has no output group with an s3:// destination, so spec.encryption cannot be applied; write the output groups into spec.settings (with spec.jobTemplate, copy them from the template)"
    )]
    NothingToEncrypt,

    #[error(
        "spec.encryption.outputGroups names {name:?}, but that group does not write to an s3:// destination; remove it from the list"
    )]
    GroupNotS3 { name: String },

    #[error(
        "spec.settings has top-level keys {keys:?}, which look like a whole job or template export (or get-job output); put only the inner Settings object in spec.settings and set the role and queue in spec.role and spec.queue"
    )]
    WrappedExport { keys: Vec<String> },

    #[error(
        "spec.settings has both {first:?} and {second:?} at {path}; use one spelling per member"
    )]
    DuplicateMember {
        path: String,
        first: String,
        second: String,
    },

    #[error(
        "spec.settings has no OutputGroups; add at least one output group or set spec.jobTemplate"
    )]
    NoOutputGroups,

    #[error("output group {group:?} ({path}) has no Outputs; add at least one output")]
    EmptyOutputGroup { group: String, path: String },

    #[error(
        "output group {group:?} has destination {destination:?}, which is not an s3:// URI; write it as s3://BUCKET/PREFIX/"
    )]
    DestinationNotS3 { group: String, destination: String },

    #[error(
        "spec.encryption.outputGroups names {name:?}, but spec.settings has no output group of that name; the groups are {available:?}"
    )]
    UnknownOutputGroup {
        name: String,
        available: Vec<String>,
    },

    #[error(
        "output group {group:?} already sets Encryption {existing}, which differs from spec.encryption ({desired}); remove the Encryption block from spec.settings or make spec.encryption match it"
    )]
    EncryptionConflict {
        group: String,
        existing: Value,
        desired: Value,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An S3 destination of one output group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Name of the output group, or `OutputGroups[i]` when it has none.
    pub group: String,
    /// The destination as written in the settings.
    pub uri: String,
    /// Bucket name parsed from the URI.
    pub bucket: String,
}

/// Settings in REST spelling, checked for shape, with their S3 destinations listed.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizedSettings {
    json: Map<String, Value>,
    destinations: Vec<Destination>,
}

/// Key material for the `Encryption` block of each selected destination.
#[derive(Clone, Debug, PartialEq)]
pub struct EncryptionPlan<'a> {
    pub spec: &'a EncryptionSpec,
    /// Key ARN resolved by `kms:DescribeKey`, because MediaConvert takes key ARNs only,
    /// never alias ARNs. `None` with `KMS` means the AWS managed key `aws/s3`.
    pub resolved_key_arn: Option<&'a str>,
}

/// Settings ready for `CreateJob`, and the groups that received encryption.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedSettings {
    pub json: Value,
    pub encrypted_groups: Vec<String>,
}

impl NormalizedSettings {
    /// Normalizes user settings to REST spelling and checks their shape offline.
    ///
    /// `from_template` relaxes the output group requirement, because a job template may
    /// supply the output groups.
    pub fn parse(settings: &Value, from_template: bool) -> Result<Self> {
        let object = settings.as_object().ok_or(Error::SettingsNotAnObject {
            found: json_type_name(settings),
        })?;
        reject_wrapped_export(object)?;

        let json = normalize_object(object, "spec.settings")?;
        let destinations = collect_destinations(&json, from_template)?;
        Ok(Self { json, destinations })
    }

    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }

    /// Names of the output groups, in order.
    pub fn group_names(&self) -> Vec<String> {
        output_groups(&self.json)
            .iter()
            .enumerate()
            .map(|(index, group)| group_name(group, index))
            .collect()
    }

    /// Writes the encryption of `plan` into every selected S3 destination.
    pub fn prepare(&self, plan: &EncryptionPlan<'_>) -> Result<PreparedSettings> {
        let desired = encryption_block(plan);
        let selected = self.selected_groups(plan.spec)?;
        let mut json = self.json.clone();
        let mut encrypted_groups = Vec::new();

        let groups = json.get_mut("outputGroups").and_then(Value::as_array_mut);
        for (index, group) in groups.into_iter().flatten().enumerate() {
            let name = group_name(group, index);
            if !selected.contains(&name) {
                continue;
            }
            let Some(group_settings) = s3_group_settings_mut(group) else {
                return Err(Error::GroupNotS3 { name });
            };
            set_encryption(group_settings, &name, &desired)?;
            encrypted_groups.push(name);
        }
        // The operator guarantees encryption, so a job with nothing to encrypt is refused.
        if encrypted_groups.is_empty() {
            return Err(Error::NothingToEncrypt);
        }
        Ok(PreparedSettings {
            json: Value::Object(json),
            encrypted_groups,
        })
    }

    /// Names of the groups `spec.encryption.outputGroups` selects: the listed ones, or every
    /// group with an S3 destination when the list is empty.
    fn selected_groups(&self, spec: &EncryptionSpec) -> Result<Vec<String>> {
        if spec.output_groups.is_empty() {
            return Ok(self.destinations.iter().map(|d| d.group.clone()).collect());
        }
        let available = self.group_names();
        for name in &spec.output_groups {
            if !available.contains(name) {
                return Err(Error::UnknownOutputGroup {
                    name: name.clone(),
                    available,
                });
            }
        }
        Ok(spec.output_groups.clone())
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Rejects a console job or template export pasted whole, which nests the real settings
/// under `Settings` next to keys such as `Role` and `Queue` that MediaConvert would reject.
fn reject_wrapped_export(object: &Map<String, Value>) -> Result<()> {
    const WRAPPERS: [&str; 6] = [
        "Settings",
        "settings",
        "Job",
        "job",
        "JobTemplate",
        "jobTemplate",
    ];
    if !WRAPPERS.iter().any(|wrapper| object.contains_key(*wrapper)) {
        return Ok(());
    }
    let keys = object
        .keys()
        .filter(|key| !JOB_SETTINGS_MEMBERS.contains(&lower_first(key).as_str()))
        .cloned()
        .collect();
    Err(Error::WrappedExport { keys })
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn normalize_value(value: &Value, path: &str) -> Result<Value> {
    match value {
        Value::Object(object) => Ok(Value::Object(normalize_object(object, path)?)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| normalize_value(item, &format!("{path}[{index}]")))
            .collect::<Result<Vec<_>>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// Lowers the first letter of each member name; the values of user-keyed maps keep their
/// keys and have their own members normalized.
fn normalize_object(object: &Map<String, Value>, path: &str) -> Result<Map<String, Value>> {
    let mut normalized = Map::new();
    let mut spelled_as = BTreeMap::new();
    for (key, value) in object {
        let member = lower_first(key);
        if let Some(previous) = spelled_as.insert(member.clone(), key.clone()) {
            return Err(Error::DuplicateMember {
                path: path.to_string(),
                first: previous,
                second: key.clone(),
            });
        }
        let member_path = format!("{path}.{key}");
        let normalized_value = match value {
            Value::Object(map) if USER_KEYED_MAPS.contains(&member.as_str()) => {
                let mut entries = Map::new();
                for (user_key, entry) in map {
                    let entry_path = format!("{member_path}[{user_key:?}]");
                    entries.insert(user_key.clone(), normalize_value(entry, &entry_path)?);
                }
                Value::Object(entries)
            }
            _ => normalize_value(value, &member_path)?,
        };
        normalized.insert(member, normalized_value);
    }
    Ok(normalized)
}

pub(crate) fn output_groups(json: &Map<String, Value>) -> &[Value] {
    json.get("outputGroups")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(crate) fn group_name(group: &Value, index: usize) -> String {
    group
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("OutputGroups[{index}]"))
}

/// Returns the member of `outputGroupSettings` that MediaConvert uses: the one its `type`
/// names (`HLS_GROUP_SETTINGS` is `hlsGroupSettings`), or without a type the first member
/// that has a destination.
fn active_group_member(settings: &Map<String, Value>) -> Option<&'static str> {
    if let Some(group_type) = settings.get("type").and_then(Value::as_str) {
        return GROUP_SETTINGS_WITH_DESTINATION
            .iter()
            .find(|member| screaming_snake(member) == group_type)
            .copied();
    }
    GROUP_SETTINGS_WITH_DESTINATION
        .iter()
        .copied()
        .find(|member| {
            settings
                .get(*member)
                .is_some_and(|inner| inner.get("destination").is_some())
        })
}

/// Converts a member name such as `dashIsoGroupSettings` to `DASH_ISO_GROUP_SETTINGS`.
fn screaming_snake(member: &str) -> String {
    let mut out = String::new();
    for c in member.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Returns the active `...GroupSettings` object of a group when it names a destination.
pub(crate) fn group_settings_with_destination(group: &Value) -> Option<&Map<String, Value>> {
    let settings = group.get("outputGroupSettings")?.as_object()?;
    let inner = settings.get(active_group_member(settings)?)?.as_object()?;
    inner.contains_key("destination").then_some(inner)
}

fn s3_group_settings_mut(group: &mut Value) -> Option<&mut Map<String, Value>> {
    let settings = group.get_mut("outputGroupSettings")?.as_object_mut()?;
    let member = active_group_member(settings)?;
    let inner = settings.get_mut(member)?.as_object_mut()?;
    let writes_to_s3 = inner
        .get("destination")
        .and_then(Value::as_str)
        .is_some_and(|destination| destination.starts_with("s3://"));
    writes_to_s3.then_some(inner)
}

fn collect_destinations(
    json: &Map<String, Value>,
    from_template: bool,
) -> Result<Vec<Destination>> {
    let groups = output_groups(json);
    if groups.is_empty() && !from_template {
        return Err(Error::NoOutputGroups);
    }
    let mut destinations = Vec::new();
    for (index, group) in groups.iter().enumerate() {
        let name = group_name(group, index);
        let outputs = group.get("outputs").and_then(Value::as_array);
        if outputs.is_none_or(|outputs| outputs.is_empty()) && !from_template {
            return Err(Error::EmptyOutputGroup {
                group: name,
                path: format!("OutputGroups[{index}].Outputs"),
            });
        }
        let Some(inner) = group_settings_with_destination(group) else {
            continue;
        };
        let uri = inner
            .get("destination")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bucket = parse_s3_bucket(uri).ok_or_else(|| Error::DestinationNotS3 {
            group: name.clone(),
            destination: uri.to_string(),
        })?;
        destinations.push(Destination {
            group: name,
            uri: uri.to_string(),
            bucket,
        });
    }
    Ok(destinations)
}

/// Returns the bucket of an `s3://BUCKET/...` URI, or `None` when it is not one.
pub fn parse_s3_bucket(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("s3://")?;
    let bucket = rest.split('/').next().unwrap_or_default();
    (!bucket.is_empty()).then(|| bucket.to_string())
}

/// Builds MediaConvert's `S3EncryptionSettings` in REST spelling.
fn encryption_block(plan: &EncryptionPlan<'_>) -> Value {
    let mut block = Map::new();
    block.insert(
        "encryptionType".into(),
        plan.spec.encryption_type.mediaconvert_value().into(),
    );
    if let Some(key) = plan.resolved_key_arn {
        block.insert("kmsKeyArn".into(), key.into());
    }
    if !plan.spec.encryption_context.is_empty() {
        block.insert(
            "kmsEncryptionContext".into(),
            encode_encryption_context(&plan.spec.encryption_context).into(),
        );
    }
    Value::Object(block)
}

/// Encodes an encryption context as MediaConvert expects it: base64 of a JSON string map.
pub fn encode_encryption_context(context: &BTreeMap<String, String>) -> String {
    let json = serde_json::to_string(context).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(json)
}

/// Puts `desired` at `destinationSettings.s3Settings.encryption`, unless the user already
/// wrote a different block there.
fn set_encryption(
    group_settings: &mut Map<String, Value>,
    group: &str,
    desired: &Value,
) -> Result<()> {
    let destination = object_member(group_settings, "destinationSettings", group)?;
    let s3_settings = object_member(destination, "s3Settings", group)?;
    match s3_settings.get("encryption") {
        Some(existing) if existing != desired => Err(Error::EncryptionConflict {
            group: group.to_string(),
            existing: existing.clone(),
            desired: desired.clone(),
        }),
        _ => {
            s3_settings.insert("encryption".into(), desired.clone());
            Ok(())
        }
    }
}

/// Returns the object at `key`, creating it when it is absent or null.
fn object_member<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    group: &str,
) -> Result<&'a mut Map<String, Value>> {
    let value = parent.entry(key).or_insert(Value::Null);
    if value.is_null() {
        *value = Value::Object(Map::new());
    }
    let found = json_type_name(value);
    value.as_object_mut().ok_or_else(|| Error::NotAnObject {
        found,
        path: format!("output group {group:?}: {key}"),
    })
}

#[cfg(test)]
mod tests;
