//! Local OCI images: one or more images, each a rootfs folder and an image
//! config, written as one OCI image-layout tarball (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) that `ctr images import` accepts. Each
//! manifest in the index carries `io.containerd.image.name` (the full
//! reference containerd stores) and `org.opencontainers.image.ref.name` (its
//! tag), and a `linux/amd64` platform, so the default import unpacks it.

use crate::layer::{self, Compression, Layer};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The busybox workload image every [`crate::Node`] imports.
pub const BUSYBOX_IMAGE: &str = "runcvm.test/busybox:1";
/// The sandbox (pause) image every [`crate::Node`] imports and names as the
/// CRI plugin's `sandbox_image`.
pub const PAUSE_IMAGE: &str = "runcvm.test/pause:1";

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The runtime part of an image config (`config` in the OCI image config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// One image to build: a single layer made from `rootfs`.
#[derive(Debug, Clone)]
pub struct Image {
    /// Full reference, such as `runcvm.test/busybox:1`.
    pub reference: String,
    pub rootfs: PathBuf,
    pub config: ImageConfig,
    pub compression: Compression,
}

impl Image {
    pub fn new(reference: impl Into<String>, rootfs: impl Into<PathBuf>) -> Self {
        Self {
            reference: reference.into(),
            rootfs: rootfs.into(),
            config: ImageConfig {
                env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()],
                ..ImageConfig::default()
            },
            compression: Compression::None,
        }
    }

    pub fn entrypoint<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.config.entrypoint = argv.into_iter().map(Into::into).collect();
        self
    }

    pub fn cmd<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.config.cmd = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Adds `KEY=value` to the image's environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.config.env.push(format!("{key}={value}"));
        self
    }

    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.config.working_dir = dir.into();
        self
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.config.user = user.into();
        self
    }

    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The busybox workload image ([`BUSYBOX_IMAGE`], gzip layer, `sh` as
    /// its command) over a rootfs from [`runcvm_test_infra::busybox_rootfs`].
    pub fn busybox(rootfs: &Path) -> Self {
        Self::new(BUSYBOX_IMAGE, rootfs)
            .cmd(["/bin/sh"])
            .compression(Compression::Gzip)
    }

    /// The sandbox image ([`PAUSE_IMAGE`], uncompressed layer): PID 1 sleeps
    /// forever and leaves SIGTERM to the default action, as containerd stops
    /// sandboxes with SIGKILL anyway.
    pub fn pause(rootfs: &Path) -> Self {
        Self::new(PAUSE_IMAGE, rootfs).entrypoint(["/bin/sleep", "infinity"])
    }
}

/// What was written for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub reference: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digest: String,
}

/// Writes `images` as one OCI image-layout tarball at `out`. Images over the
/// same rootfs with the same compression share one layer blob.
pub fn write_archive(images: &[Image], out: &Path) -> Result<Vec<BuiltImage>> {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut layers: BTreeMap<(PathBuf, Compression), Layer> = BTreeMap::new();
    let mut manifests = Vec::new();
    let mut built = Vec::new();
    for image in images {
        let key = (image.rootfs.clone(), image.compression);
        if !layers.contains_key(&key) {
            let packed = layer::pack(&image.rootfs, image.compression)?;
            layers.insert(key.clone(), packed);
        }
        let layer = &layers[&key];
        blobs.insert(layer.digest.clone(), layer.blob.clone());

        let config = serde_json::to_vec(&config_json(&image.config, &layer.diff_id))?;
        let config_digest = layer::sha256_digest(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": { "mediaType": CONFIG, "digest": config_digest, "size": config.len() },
            "layers": [{
                "mediaType": image.compression.media_type(),
                "digest": layer.digest,
                "size": layer.blob.len(),
            }],
        }))?;
        let manifest_digest = layer::sha256_digest(&manifest);
        manifests.push(json!({
            "mediaType": MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": image.reference,
                "org.opencontainers.image.ref.name": tag_of(&image.reference),
            },
        }));
        built.push(BuiltImage {
            reference: image.reference.clone(),
            manifest_digest: manifest_digest.clone(),
            config_digest: config_digest.clone(),
            layer_digest: layer.digest.clone(),
        });
        blobs.insert(config_digest, config);
        blobs.insert(manifest_digest, manifest);
    }
    let index = serde_json::to_vec(&json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": manifests }))?;
    write_tar(out, &index, &blobs).with_context(|| format!("writing {}", out.display()))?;
    Ok(built)
}

fn config_json(config: &ImageConfig, diff_id: &str) -> Value {
    let mut runtime = serde_json::Map::new();
    let mut put = |key: &str, value: Value| {
        runtime.insert(key.to_owned(), value);
    };
    if !config.entrypoint.is_empty() {
        put("Entrypoint", json!(config.entrypoint));
    }
    if !config.cmd.is_empty() {
        put("Cmd", json!(config.cmd));
    }
    if !config.env.is_empty() {
        put("Env", json!(config.env));
    }
    if !config.working_dir.is_empty() {
        put("WorkingDir", json!(config.working_dir));
    }
    if !config.user.is_empty() {
        put("User", json!(config.user));
    }
    json!({
        "created": "2023-11-14T22:13:20Z",
        "architecture": "amd64",
        "os": "linux",
        "config": runtime,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    })
}

/// The tag of `name:tag` (the part after the last `:` that follows the last
/// `/`), or `latest`.
fn tag_of(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.rsplit_once(':').map_or("latest", |(_, tag)| tag)
}

fn write_tar(out: &Path, index: &[u8], blobs: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let file = std::fs::File::create(out)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    let mut add = |path: &str, bytes: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, bytes)
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", index)?;
    for (digest, bytes) in blobs {
        let hex = digest.trim_start_matches("sha256:");
        add(&format!("blobs/sha256/{hex}"), bytes)?;
    }
    builder
        .into_inner()?
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn tags_are_taken_from_the_last_path_component() {
        assert_eq!(tag_of("runcvm.test/busybox:1"), "1");
        assert_eq!(tag_of("localhost:5000/busybox"), "latest");
        assert_eq!(tag_of("localhost:5000/a/busybox:v2"), "v2");
    }

    #[test]
    fn an_archive_holds_both_images_and_every_blob_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
        std::fs::write(rootfs.join("bin/x"), b"x").expect("write");
        let out = dir.path().join("images.tar");
        let images = [
            Image::new("runcvm.test/a:1", &rootfs)
                .cmd(["/bin/x"])
                .working_dir("/srv")
                .user("1000:1000"),
            Image::new("runcvm.test/b:2", &rootfs).entrypoint(["/bin/x", "y"]),
        ];
        let built = write_archive(&images, &out).expect("write");
        assert_eq!(built[0].layer_digest, built[1].layer_digest);

        let mut files = BTreeMap::new();
        let mut archive = tar::Archive::new(std::fs::File::open(&out).expect("open"));
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read");
            files.insert(entry.path().expect("path").display().to_string(), bytes);
        }
        // oci-layout, index.json, one layer, two configs, two manifests.
        assert_eq!(files.len(), 7, "{:?}", files.keys());
        for (name, bytes) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                assert_eq!(layer::sha256_digest(bytes), format!("sha256:{hex}"));
            }
        }
        let index: Value = serde_json::from_slice(&files["index.json"]).expect("index");
        let first = &index["manifests"][0];
        assert_eq!(first["annotations"]["io.containerd.image.name"], "runcvm.test/a:1");
        assert_eq!(first["annotations"]["org.opencontainers.image.ref.name"], "1");
        assert_eq!(first["platform"]["os"], "linux");
        let config_blob = &files[&format!("blobs/sha256/{}", &built[0].config_digest[7..])];
        let config: Value = serde_json::from_slice(config_blob).expect("config");
        assert_eq!(config["config"]["Cmd"], json!(["/bin/x"]));
        assert_eq!(config["config"]["WorkingDir"], "/srv");
        assert_eq!(config["config"]["User"], "1000:1000");
        assert!(config["config"].get("Entrypoint").is_none());
    }
}
