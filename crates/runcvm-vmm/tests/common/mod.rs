//! What the Firecracker tests share: the official API description.

use runcvm_vmm::firecracker::schema::ApiDescription;
use std::path::{Path, PathBuf};

const API_DESCRIPTION: &str = "firecracker-v1.16.1-api.yaml";

/// Where the API description is looked for: `RUNCVM_FIRECRACKER_API`, the
/// `shared/reference` folder beside the repository, then the workplace's.
fn candidates() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("RUNCVM_FIRECRACKER_API") {
        return vec![PathBuf::from(path)];
    }
    vec![
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/reference")
            .join(API_DESCRIPTION),
        Path::new("/work/shared/reference").join(API_DESCRIPTION),
    ]
}

/// The API description. Missing, the test fails: it must never pass
/// without having checked anything.
pub fn api() -> ApiDescription {
    let tried = candidates();
    let path = tried.iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "Firecracker's API description is not at {tried:?}: these tests validate against it; set RUNCVM_FIRECRACKER_API to its path"
        )
    });
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
