//! Output file paths of a completed job, computed from its settings the way
//! MediaConvert names files and reports them in `outputGroupDetails`.
//!
//! Settings keys are read in the REST camelCase spelling (`fileInput`) and,
//! failing that, in PascalCase (`FileInput`), because fakecloud stores the
//! settings exactly as the client sent them.

use serde_json::{Map, Value, json};

/// Builds one `outputGroupDetails` entry per output group of `settings`, each
/// with one `outputDetails` entry per output.
///
/// File groups list `<directory><base><nameModifier>.<extension>` per output.
/// HLS outputs list their variant playlist, and HLS, DASH and CMAF groups list
/// their main manifest in `playlistFilePaths`.
pub fn output_group_details(settings: &Value) -> Vec<Value> {
    let input_base = input_base_name(settings);
    let groups = array(settings, "outputGroups");
    groups
        .iter()
        .map(|group| group_details(group, &input_base))
        .collect()
}

/// The per-group-kind facts: `outputGroupSettings` key, detail `type`, and
/// the manifest extensions the group writes.
const GROUP_KINDS: &[(&str, &str, &[&str])] = &[
    ("fileGroupSettings", "FILE_GROUP", &[]),
    ("hlsGroupSettings", "HLS_GROUP", &["m3u8"]),
    ("dashIsoGroupSettings", "DASH_ISO_GROUP", &["mpd"]),
    ("cmafGroupSettings", "CMAF_GROUP", &["m3u8", "mpd"]),
    ("msSmoothGroupSettings", "MS_SMOOTH_GROUP", &["ism"]),
];

fn group_details(group: &Value, input_base: &str) -> Value {
    let group_settings = field(group, "outputGroupSettings");
    let kind = GROUP_KINDS.iter().find_map(|&(key, kind, manifests)| {
        let settings = group_settings.and_then(|s| field(s, key))?;
        Some((settings, kind, manifests))
    });
    let outputs = array(group, "outputs");

    let Some((kind_settings, kind, manifests)) = kind else {
        let details: Vec<Value> = outputs.iter().map(|_| json!({})).collect();
        return json!({ "outputDetails": details });
    };
    let destination = string(kind_settings, "destination");
    let location = destination.map(|d| Location::parse(d, input_base));

    let output_details: Vec<Value> = outputs
        .iter()
        .map(|output| match (&location, kind) {
            (Some(location), "FILE_GROUP") => {
                let path = location.file(output, &file_extension(output));
                json!({ "outputFilePaths": [path] })
            }
            (Some(location), "HLS_GROUP") => {
                json!({ "outputFilePaths": [location.file(output, "m3u8")] })
            }
            _ => json!({}),
        })
        .collect();

    let mut details = Map::new();
    details.insert("type".to_string(), json!(kind));
    details.insert("outputDetails".to_string(), json!(output_details));
    if let Some(location) = &location {
        let playlists: Vec<String> = manifests
            .iter()
            .filter(|extension| writes_manifest(kind_settings, extension))
            .map(|extension| location.manifest(extension))
            .collect();
        if !playlists.is_empty() {
            details.insert("playlistFilePaths".to_string(), json!(playlists));
        }
    }
    Value::Object(details)
}

/// Reports whether a CMAF group writes the manifest with `extension`, which it
/// does unless `writeHlsManifest` or `writeDashManifest` is `DISABLED`.
fn writes_manifest(group_settings: &Value, extension: &str) -> bool {
    let switch = match extension {
        "m3u8" => "writeHlsManifest",
        "mpd" => "writeDashManifest",
        _ => return true,
    };
    string(group_settings, switch) != Some("DISABLED")
}

/// Directory and base name that a destination such as `s3://b/out/` or
/// `s3://b/out/movie` gives to the files of its group.
struct Location {
    directory: String,
    base: String,
}

impl Location {
    /// Splits `destination`: a trailing `/` keeps the input's base name,
    /// otherwise the last segment is the base name.
    fn parse(destination: &str, input_base: &str) -> Self {
        if destination.ends_with('/') {
            return Self {
                directory: destination.to_string(),
                base: input_base.to_string(),
            };
        }
        let (directory, base) = match destination.rsplit_once('/') {
            Some((directory, base)) => (format!("{directory}/"), base),
            None => (String::new(), destination),
        };
        Self {
            directory,
            base: base.to_string(),
        }
    }

    fn file(&self, output: &Value, extension: &str) -> String {
        let modifier = string(output, "nameModifier").unwrap_or_default();
        format!("{}{}{modifier}.{extension}", self.directory, self.base)
    }

    fn manifest(&self, extension: &str) -> String {
        format!("{}{}.{extension}", self.directory, self.base)
    }
}

/// Returns the base name of `inputs[0].fileInput` without its extension, or
/// `input` when the job has no file input.
fn input_base_name(settings: &Value) -> String {
    let file_input = array(settings, "inputs")
        .first()
        .and_then(|input| string(input, "fileInput"));
    let Some(file_input) = file_input else {
        return "input".to_string();
    };
    let name = file_input.rsplit('/').next().unwrap_or(file_input);
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => name.to_string(),
    }
}

/// Returns the output's `extension`, else the default for its container, as
/// the MediaConvert API model documents for `Output.Extension`.
///
/// NOTE: that documentation lists MP4, MOV, M2TS, MXF, WEBM and GIF only. The
/// other container and codec extensions here are assumed from their names.
fn file_extension(output: &Value) -> String {
    if let Some(extension) = string(output, "extension") {
        return extension.to_string();
    }
    let container = field(output, "containerSettings").and_then(|c| string(c, "container"));
    let extension = match container.unwrap_or("RAW") {
        "MP4" => "mp4",
        "MOV" => "mov",
        "M2TS" => "m2ts",
        "MXF" => "mxf",
        "WEBM" => "webm",
        "F4V" => "f4v",
        "ISMV" => "ismv",
        "GIF" => "gif",
        "OGG" => "ogg",
        "Y4M" => "y4m",
        _ => codec_extension(output),
    };
    extension.to_string()
}

/// Returns the elementary-stream extension of a RAW output's codec.
fn codec_extension(output: &Value) -> &'static str {
    let video_codec = field(output, "videoDescription")
        .and_then(|video| field(video, "codecSettings"))
        .and_then(|codec| string(codec, "codec"));
    let audio_codec = array(output, "audioDescriptions")
        .first()
        .and_then(|audio| field(audio, "codecSettings"))
        .and_then(|codec| string(codec, "codec"));
    match video_codec.or(audio_codec).unwrap_or_default() {
        "H_264" => "h264",
        "H_265" => "h265",
        "MPEG2" => "m2v",
        "AV1" => "av1",
        "FRAME_CAPTURE" => "jpg",
        "AAC" => "aac",
        "AC3" => "ac3",
        "EAC3" => "eac3",
        "MP3" => "mp3",
        "WAV" => "wav",
        "FLAC" => "flac",
        _ => "bin",
    }
}

/// Looks up `key` in camelCase, then with its first letter upper-cased.
fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(found) = value.get(key) {
        return Some(found);
    }
    let mut chars = key.chars();
    let first = chars.next()?.to_ascii_uppercase();
    value.get(format!("{first}{}", chars.as_str()))
}

fn string<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    field(value, key)?.as_str()
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    field(value, key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_group(destination: &str, outputs: Value) -> Value {
        json!({
            "outputGroupSettings": {
                "type": "FILE_GROUP_SETTINGS",
                "fileGroupSettings": {"destination": destination},
            },
            "outputs": outputs,
        })
    }

    fn settings(groups: Value) -> Value {
        json!({
            "inputs": [{"fileInput": "s3://media/in/show.final.mov"}],
            "outputGroups": groups,
        })
    }

    fn paths(details: &Value, output: usize) -> Vec<String> {
        let paths = &details["outputDetails"][output]["outputFilePaths"];
        serde_json::from_value(paths.clone()).unwrap()
    }

    #[test]
    fn file_group_directory_uses_input_base_name() {
        let group = file_group(
            "s3://media/out/",
            json!([
                {"nameModifier": "_720p", "containerSettings": {"container": "MP4"}},
                {"nameModifier": "_mezz", "containerSettings": {"container": "MOV"}},
                {"containerSettings": {"container": "M2TS"}},
                {"nameModifier": "_x", "containerSettings": {"container": "MXF"}},
                {"nameModifier": "_w", "containerSettings": {"container": "WEBM"}},
            ]),
        );
        let details = output_group_details(&settings(json!([group])));
        assert_eq!(details.len(), 1);
        assert_eq!(details[0]["type"], "FILE_GROUP");
        let expected = [
            "s3://media/out/show.final_720p.mp4",
            "s3://media/out/show.final_mezz.mov",
            "s3://media/out/show.final.m2ts",
            "s3://media/out/show.final_x.mxf",
            "s3://media/out/show.final_w.webm",
        ];
        for (index, path) in expected.iter().enumerate() {
            assert_eq!(
                paths(&details[0], index),
                vec![path.to_string()],
                "output {index}"
            );
        }
        assert!(details[0].get("playlistFilePaths").is_none());
    }

    #[test]
    fn file_group_destination_names_base() {
        let group = file_group(
            "s3://media/out/trailer",
            json!([{"nameModifier": "-hd", "containerSettings": {"container": "MP4"}}]),
        );
        let details = output_group_details(&settings(json!([group])));
        assert_eq!(paths(&details[0], 0), vec!["s3://media/out/trailer-hd.mp4"]);
    }

    #[test]
    fn raw_outputs_use_codec_extension() {
        let group = file_group(
            "s3://media/out/",
            json!([
                {"containerSettings": {"container": "RAW"},
                 "videoDescription": {"codecSettings": {"codec": "H_265"}}},
                {"audioDescriptions": [{"codecSettings": {"codec": "AAC"}}]},
                {"containerSettings": {"container": "RAW"}},
                {"extension": "ts", "containerSettings": {"container": "M2TS"}},
            ]),
        );
        let details = output_group_details(&settings(json!([group])));
        assert_eq!(
            paths(&details[0], 0),
            vec!["s3://media/out/show.final.h265"]
        );
        assert_eq!(paths(&details[0], 1), vec!["s3://media/out/show.final.aac"]);
        assert_eq!(paths(&details[0], 2), vec!["s3://media/out/show.final.bin"]);
        assert_eq!(paths(&details[0], 3), vec!["s3://media/out/show.final.ts"]);
    }

    #[test]
    fn hls_group_lists_variants_and_manifest() {
        let group = json!({
            "outputGroupSettings": {
                "type": "HLS_GROUP_SETTINGS",
                "hlsGroupSettings": {"destination": "s3://media/hls/"},
            },
            "outputs": [{"nameModifier": "_1080"}, {"nameModifier": "_540"}],
        });
        let details = output_group_details(&settings(json!([group])));
        assert_eq!(details[0]["type"], "HLS_GROUP");
        assert_eq!(
            details[0]["playlistFilePaths"],
            json!(["s3://media/hls/show.final.m3u8"])
        );
        assert_eq!(
            paths(&details[0], 0),
            vec!["s3://media/hls/show.final_1080.m3u8"]
        );
        assert_eq!(
            paths(&details[0], 1),
            vec!["s3://media/hls/show.final_540.m3u8"]
        );
    }

    #[test]
    fn dash_and_cmaf_groups_list_manifests() {
        let dash = json!({
            "outputGroupSettings": {"dashIsoGroupSettings": {"destination": "s3://m/dash/main"}},
            "outputs": [{"nameModifier": "_v"}],
        });
        let cmaf = json!({
            "outputGroupSettings": {"cmafGroupSettings": {
                "destination": "s3://m/cmaf/", "writeHlsManifest": "DISABLED"}},
            "outputs": [{"nameModifier": "_v"}],
        });
        let details = output_group_details(&settings(json!([dash, cmaf])));
        assert_eq!(details[0]["type"], "DASH_ISO_GROUP");
        assert_eq!(
            details[0]["playlistFilePaths"],
            json!(["s3://m/dash/main.mpd"])
        );
        assert_eq!(details[0]["outputDetails"], json!([{}]));
        assert_eq!(details[1]["type"], "CMAF_GROUP");
        assert_eq!(
            details[1]["playlistFilePaths"],
            json!(["s3://m/cmaf/show.final.mpd"])
        );
    }

    #[test]
    fn pascal_case_settings_are_read() {
        let settings = json!({
            "Inputs": [{"FileInput": "s3://media/in/clip.mp4"}],
            "OutputGroups": [{
                "OutputGroupSettings": {"FileGroupSettings": {"Destination": "s3://media/out/"}},
                "Outputs": [{"NameModifier": "_a", "ContainerSettings": {"Container": "MP4"}}],
            }],
        });
        let details = output_group_details(&settings);
        assert_eq!(paths(&details[0], 0), vec!["s3://media/out/clip_a.mp4"]);
    }

    #[test]
    fn group_without_destination_has_empty_details() {
        let group = json!({
            "outputGroupSettings": {"fileGroupSettings": {}},
            "outputs": [{"nameModifier": "_a"}, {"nameModifier": "_b"}],
        });
        let details = output_group_details(&settings(json!([group])));
        assert_eq!(details[0]["outputDetails"], json!([{}, {}]));
    }

    #[test]
    fn missing_input_uses_placeholder_base() {
        let settings = json!({"outputGroups": [file_group(
            "s3://media/out/",
            json!([{"containerSettings": {"container": "MP4"}}]),
        )]});
        let details = output_group_details(&settings);
        assert_eq!(paths(&details[0], 0), vec!["s3://media/out/input.mp4"]);
    }
}
