//! `runcvm-runtime features`: runc's answer, with what runcvm adds for its
//! workload containers. containerd asks it (through the shim's `-info`)
//! before it runs a pod with user namespaces (`hostUsers: false`), and
//! refuses such a pod's id-mapped mounts unless the runtime reports id-mapped
//! mount support. runcvm does not hand those mounts to runc: the guest runs
//! the workload in a user namespace of its own with the pod's mappings, and
//! the volumes' server maps the ids as an id-mapped mount would
//! (`docs/kubernetes.md`). So the answer says so whatever runc can do.

use serde_json::{Value, json};

/// Adds id-mapped mounts and the user namespace to runc's `features`
/// document; anything that is not such a document is returned unchanged.
pub fn with_user_namespaces(runc_answer: &[u8]) -> Vec<u8> {
    let Ok(mut features) = serde_json::from_slice::<Value>(runc_answer) else {
        return runc_answer.to_vec();
    };
    let Some(root) = features.as_object_mut() else {
        return runc_answer.to_vec();
    };
    let linux = root.entry("linux").or_insert_with(|| json!({}));
    let Some(linux) = linux.as_object_mut() else {
        return runc_answer.to_vec();
    };
    let namespaces = linux.entry("namespaces").or_insert_with(|| json!([]));
    if let Some(list) = namespaces.as_array_mut()
        && !list.iter().any(|n| n == "user")
    {
        list.push(json!("user"));
    }
    let extensions = linux.entry("mountExtensions").or_insert_with(|| json!({}));
    if let Some(extensions) = extensions.as_object_mut() {
        extensions.insert("idmap".into(), json!({"enabled": true}));
    }
    let mut out = serde_json::to_vec_pretty(&features).expect("JSON values serialize");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_mapped_mounts_and_the_user_namespace_are_added_and_the_rest_kept() {
        let runc =
            br#"{"ociVersionMin":"1.0.0","linux":{"namespaces":["mount","network"],"seccomp":{"enabled":true}}}"#;
        let answer: Value = serde_json::from_slice(&with_user_namespaces(runc)).unwrap();
        assert_eq!(answer["linux"]["mountExtensions"]["idmap"]["enabled"], json!(true));
        assert_eq!(answer["linux"]["namespaces"], json!(["mount", "network", "user"]));
        assert_eq!(answer["linux"]["seccomp"]["enabled"], json!(true));
        assert_eq!(answer["ociVersionMin"], json!("1.0.0"));
        assert_eq!(with_user_namespaces(b"not json"), b"not json");
    }
}
