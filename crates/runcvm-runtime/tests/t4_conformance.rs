//! T4: the Kubernetes CRI validation suite (critest, from
//! kubernetes-sigs/cri-tools) against a private containerd whose default
//! handler is a fresh `runcvm install` of this build, on containerd 2.x and
//! on 1.6, through the conformance kit in `../shared/conformance` (its
//! `setup.sh` has run: `scripts/test.sh` runs it).
//!
//! Every spec must pass except those listed in
//! `tests/t4/expected-failures.txt`, each with the reason no VM can pass it
//! (or why it cannot pass yet); the tier fails on any other failure, and on
//! any listed spec that passes, so the list stays true. Run with
//! `cargo test -p runcvm-runtime --test t4_conformance -- --ignored --test-threads 1`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kit, beside the project (`../shared/conformance` of the repository).
fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
}

/// A spec's verdict in critest's JUnit report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Passed,
    Failed,
    Skipped,
}

/// The report's specs by name (`[k8s.io] …` without ginkgo's `[It] `).
fn verdicts(junit: &str) -> Vec<(String, Verdict)> {
    let mut specs = Vec::new();
    let mut rest = junit;
    while let Some(start) = rest.find("<testcase ") {
        rest = &rest[start..];
        let end = rest.find("</testcase>").map_or(rest.len(), |e| e + "</testcase>".len());
        let (case, after) = rest.split_at(end);
        rest = after;
        let Some(name) = attribute(case, "name") else { continue };
        let name = name.strip_prefix("[It] ").unwrap_or(&name).to_owned();
        let verdict = if case.contains("<failure") || case.contains("<error") {
            Verdict::Failed
        } else if case.contains("<skipped") || attribute(case, "status").is_some_and(|s| s == "skipped") {
            Verdict::Skipped
        } else {
            Verdict::Passed
        };
        // Ginkgo's suite-level nodes are not specs.
        if name.starts_with("[k8s.io]") {
            specs.push((name, verdict));
        }
    }
    specs
}

fn attribute(element: &str, name: &str) -> Option<String> {
    let head = &element[..element.find('>').unwrap_or(element.len())];
    let key = format!(" {name}=\"");
    let start = head.find(&key)? + key.len();
    let len = head[start..].find('"')?;
    Some(unescape(&head[start..start + len]))
}

fn unescape(text: &str) -> String {
    text.replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The specs expected to fail on `containerd` (`2` or `1.6`), and those
/// whose outcome depends on timing: lines `VERSIONS | SPEC | WHY`,
/// VERSIONS being `all`, `2` or `1.6`, prefixed with `~` for a spec that
/// may pass or fail.
fn expected_failures(containerd: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/t4/expected-failures.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut specs, mut either) = (BTreeSet::new(), BTreeSet::new());
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(" | ").map(str::trim).collect();
        let [versions, spec, why] = fields[..] else {
            panic!("{}:{}: not `VERSIONS | SPEC | WHY`", path.display(), number + 1);
        };
        assert!(!why.is_empty(), "{}:{}: say why", path.display(), number + 1);
        let (versions, list) = match versions.strip_prefix('~') {
            Some(versions) => (versions, &mut either),
            None => (versions, &mut specs),
        };
        if versions == "all" || versions.split(',').any(|v| v.trim() == containerd) {
            list.insert(spec.to_owned());
        }
    }
    (specs, either)
}

/// Runs critest on `containerd` and holds it to the list.
fn conformance(containerd: &str) {
    runcvm_test_node::require_t3();
    let run = kit().join("run.sh");
    assert!(
        run.is_file() && kit().join("setup.sh").is_file(),
        "T4 needs the conformance kit at {} (run its setup.sh once; scripts/test.sh does)",
        kit().display()
    );
    let root = support::install_root();
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("t4-containerd-{containerd}"));
    let _ = std::fs::remove_dir_all(&report);
    let status = Command::new("bash")
        .arg(&run)
        .args(["--handler", "runcvm", "--runtime-binary"])
        .arg(root.join("bin/runcvm-runtime"))
        .args(["--containerd", containerd, "--report-dir"])
        .arg(&report)
        .status()
        .expect("run the conformance kit");
    let junit = std::fs::read_to_string(report.join("junit.xml")).unwrap_or_else(|e| {
        panic!(
            "critest on containerd {containerd} left no report ({e}; run.sh exited {status}): see {}",
            report.display()
        )
    });
    let specs = verdicts(&junit);
    assert!(specs.len() > 100, "only {} specs in {}", specs.len(), report.display());
    let (expected, either) = expected_failures(containerd);
    let failed: BTreeSet<String> = specs
        .iter()
        .filter(|(_, v)| *v == Verdict::Failed)
        .map(|(n, _)| n.clone())
        .filter(|n| !either.contains(n))
        .collect();
    let passed = specs.iter().filter(|(_, v)| *v == Verdict::Passed).count();
    let skipped = specs.iter().filter(|(_, v)| *v == Verdict::Skipped).count();
    println!(
        "critest on containerd {containerd} with runcvm: {passed} passed, {} failed, {skipped} skipped (report: {})",
        failed.len(),
        report.display()
    );
    let unexpected: Vec<&String> = failed.difference(&expected).collect();
    let known_names: BTreeSet<&String> = specs.iter().map(|(n, _)| n).collect();
    let now_passing: Vec<&String> = expected
        .iter()
        .filter(|spec| !failed.contains(*spec) && known_names.contains(spec))
        .collect();
    let unknown: Vec<&String> = expected
        .iter()
        .chain(&either)
        .filter(|spec| !known_names.contains(spec))
        .collect();
    assert!(
        unexpected.is_empty() && now_passing.is_empty() && unknown.is_empty(),
        "critest on containerd {containerd}:\n  failed, not on the list: {unexpected:#?}\n  \
         on the list, but did not fail (take it off): {now_passing:#?}\n  \
         on the list, but critest has no such spec: {unknown:#?}\n  (critest.log in {})",
        report.display()
    );
}

#[test]
#[ignore = "T4: critest against a private containerd 2.x with the runcvm handler; run scripts/test.sh"]
fn critest_on_containerd_2() {
    conformance("2");
}

#[test]
#[ignore = "T4: critest against a private containerd 1.6 with the runcvm handler; run scripts/test.sh"]
fn critest_on_containerd_1_6() {
    conformance("1.6");
}

#[test]
fn the_junit_report_is_read_as_critest_writes_it() {
    let junit = r#"<testsuites><testsuite name="CRI validation">
      <testcase name="[BeforeSuite]" classname="CRI validation" status="passed"></testcase>
      <testcase name="[It] [k8s.io] Streaming runtime should support portforward [Conformance]" classname="x" status="passed" time="1.2"></testcase>
      <testcase name="[It] [k8s.io] Security Context NamespaceOption runtime should support HostPID" status="failed"><failure message="x">boom</failure></testcase>
      <testcase name="[It] [k8s.io] Container Mount Propagation mount with &#39;rprivate&#39; should not support propagation" status="skipped"><skipped message="skipped"></skipped></testcase>
    </testsuite></testsuites>"#;
    assert_eq!(
        verdicts(junit),
        vec![
            (
                "[k8s.io] Streaming runtime should support portforward [Conformance]".to_owned(),
                Verdict::Passed
            ),
            (
                "[k8s.io] Security Context NamespaceOption runtime should support HostPID".to_owned(),
                Verdict::Failed
            ),
            (
                "[k8s.io] Container Mount Propagation mount with 'rprivate' should not support propagation".to_owned(),
                Verdict::Skipped
            ),
        ]
    );
}

#[test]
fn the_list_gives_a_reason_for_every_spec_and_reads_for_both_versions() {
    let (on_2, _) = expected_failures("2");
    let (on_1_6, _) = expected_failures("1.6");
    assert!(on_2.iter().any(|s| s.contains("HostNetwork is true")));
    assert!(on_1_6.iter().any(|s| s.contains("HostNetwork is true")));
}
