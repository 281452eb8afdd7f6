use super::*;
use proptest::prelude::*;

const BINARY: &str = "/opt/runcvm/bin/runcvm-runtime";

/// Debian 12's /etc/containerd/config.toml as the containerd package ships it.
const DEBIAN: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";

fn register(current: Option<&str>, previous: Option<&ConfigRecord>) -> RegisterPlan {
    plan_register(current, previous, BINARY, PathBuf::from("/etc/containerd/config.toml")).unwrap()
}

fn block(cri: &str, restate: bool, systemd: bool, nl: &str) -> String {
    block_text(cri, BINARY, restate, systemd, nl)
}

fn binary_name(text: &str) -> Option<String> {
    let items = toml_scan::scan(text).unwrap();
    [CRI_V2, CRI_V1].iter().find_map(|cri| {
        match toml_scan::find_pair(
            &items,
            &[
                "plugins",
                cri,
                "containerd",
                "runtimes",
                HANDLER,
                "options",
                "BinaryName",
            ],
        ) {
            Some((_, Value::String(name))) => Some(name.clone()),
            _ => None,
        }
    })
}

#[test]
fn the_block_registers_the_handler_with_the_shim_and_our_runtime() {
    let text = block(CRI_V2, false, false, "\n");
    assert_eq!(
        text,
        format!(
            "{BEGIN}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runcvm]\n  runtime_type = \"io.containerd.runc.v2\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runcvm.options]\n  BinaryName = \"/opt/runcvm/bin/runcvm-runtime\"\n{END}\n"
        )
    );
    assert_eq!(binary_name(&text).as_deref(), Some(BINARY));
}

#[test]
fn containerds_default_runtime_is_restated_when_the_config_names_none() {
    let text = block(CRI_V2, true, false, "\n");
    assert!(text.contains(
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
    ));
    assert!(register(None, None).facts.restates_runc);
    assert!(register(Some(DEBIAN), None).facts.restates_runc);
    let crun = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun]\n  runtime_type = \"io.containerd.runc.v2\"\n";
    let plan = register(Some(crun), None);
    assert!(!plan.facts.restates_runc);
    assert!(!plan.text.contains("runtimes.runc]"));
    // Taken out again by uninstall.
    let plan = register(Some(DEBIAN), None);
    assert_eq!(
        plan_unregister(Some(&plan.text), &plan.record),
        UnregisterPlan::Write {
            text: DEBIAN.into(),
            exact: true
        }
    );
}

#[test]
fn a_missing_file_is_created_as_version_2_with_the_block() {
    let plan = register(None, None);
    assert_eq!(
        plan.text,
        format!("version = 2\n\n{}", block(CRI_V2, true, false, "\n"))
    );
    assert_eq!(plan.outcome, Registration::Added);
    assert!(plan.record.created);
    assert_eq!(plan.record.original, SCAFFOLD);
    assert_eq!(plan_unregister(Some(&plan.text), &plan.record), UnregisterPlan::Delete);
}

#[test]
fn debians_config_gets_the_block_appended_and_nothing_else() {
    let plan = register(Some(DEBIAN), None);
    assert_eq!(plan.text, format!("{DEBIAN}\n{}", block(CRI_V2, true, false, "\n")));
    assert_eq!(
        (plan.record.original.as_str(), plan.record.offset),
        (DEBIAN, DEBIAN.len())
    );
    assert!(!plan.record.created);
    assert_eq!(
        plan_unregister(Some(&plan.text), &plan.record),
        UnregisterPlan::Write {
            text: DEBIAN.into(),
            exact: true
        }
    );
}

#[test]
fn a_second_install_changes_nothing() {
    for current in [None, Some(DEBIAN), Some("# only a comment, no newline")] {
        let first = register(current, None);
        let second = register(Some(&first.text), Some(&first.record));
        assert_eq!(second.outcome, Registration::Unchanged, "{current:?}");
        assert_eq!(second.text, first.text);
        assert_eq!(second.record, first.record);
    }
}

#[test]
fn crlf_comments_and_a_missing_final_newline_are_kept() {
    let config = "# managed by hand\r\nversion = 2 # v2\r\n\r\n[plugins.\"io.containerd.grpc.v1.cri\"]\r\n  sandbox_image = \"pause:3.9\" # pinned";
    let plan = register(Some(config), None);
    assert_eq!(
        plan.text,
        format!("{config}\r\n\r\n{}", block(CRI_V2, true, false, "\r\n"))
    );
    assert!(!plan.text.replace("\r\n", "").contains('\n'), "only CRLF line ends");
    assert_eq!(
        plan_unregister(Some(&plan.text), &plan.record),
        UnregisterPlan::Write {
            text: config.into(),
            exact: true
        }
    );
}

#[test]
fn imports_arrays_are_left_as_written_and_reported() {
    for config in [
        "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
        "version = 2\nimports = [\n  \"/etc/containerd/a.toml\", # first\n  'b.toml',\n]\n\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/opt/cni/bin\"\n",
    ] {
        let plan = register(Some(config), None);
        assert!(plan.text.starts_with(config));
        assert_eq!(
            &plan.text[config.len()..],
            format!("\n{}", block(CRI_V2, true, false, "\n"))
        );
        assert!(!plan.facts.imports.is_empty());
    }
    let plan = register(
        Some("imports = [\n  \"/a.toml\",\n  \"b.toml\"\n]\nversion = 2\n"),
        None,
    );
    assert_eq!(plan.facts.imports, ["/a.toml", "b.toml"]);
}

#[test]
fn a_version_1_config_gets_the_short_plugin_name() {
    let config = "[plugins.cri]\n  stream_server_port = \"10010\"\n";
    let plan = register(Some(config), None);
    assert_eq!(plan.text, format!("{config}\n{}", block(CRI_V1, true, false, "\n")));
    assert!(plan.text.contains("[plugins.cri.containerd.runtimes.runcvm]"));
}

#[test]
fn systemd_cgroup_follows_the_default_runtime() {
    let runc = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n";
    assert!(
        register(Some(runc), None)
            .text
            .ends_with(&block(CRI_V2, false, true, "\n"))
    );
    assert!(register(Some(runc), None).facts.systemd_cgroup);
    let crun = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"crun\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun.options]\n  SystemdCgroup = true\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = false\n";
    assert!(register(Some(crun), None).facts.systemd_cgroup);
    let off = runc.replace("true", "false");
    assert!(!register(Some(&off), None).facts.systemd_cgroup);
}

#[test]
fn another_runcvm_runtime_or_an_inline_table_is_refused_with_its_line() {
    let cases = [
        (
            "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runcvm]\n  runtime_type = \"io.containerd.runc.v2\"\n",
            3,
            "runtime named runcvm",
        ),
        (
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  runtimes.runcvm.runtime_type = \"x\"\n",
            3,
            "runtime named runcvm",
        ),
        (
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes = { runc = { runtime_type = \"io.containerd.runc.v2\" } }\n",
            3,
            "cannot extend",
        ),
    ];
    for (config, line, why) in cases {
        let err = plan_register(Some(config), None, BINARY, PathBuf::new()).unwrap_err();
        match &err {
            ConfigError::Conflict {
                line: at, why: text, ..
            } => {
                assert_eq!(*at, line, "{config}");
                assert!(text.contains(why), "{err}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn other_versions_and_broken_files_are_refused() {
    let err = plan_register(Some("version = 3\n"), None, BINARY, PathBuf::new()).unwrap_err();
    assert_eq!(err, ConfigError::Version("3".into()));
    assert!(err.to_string().contains("containerd 1.x"), "{err}");
    let err = plan_register(Some("version = 2\n[plugins\n"), None, BINARY, PathBuf::new()).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { line: 2, .. }), "{err:?}");
}

#[test]
fn edits_after_install_are_kept_and_only_the_block_is_removed() {
    let plan = register(Some(DEBIAN), None);
    let edited = plan.text.replace("/usr/lib/cni", "/opt/cni/bin")
        + "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
    // A second install leaves an edited file alone.
    let again = register(Some(&edited), Some(&plan.record));
    assert_eq!(
        (again.outcome, again.text.as_str()),
        (Registration::Unchanged, edited.as_str())
    );
    // Uninstall takes out the block and nothing else.
    let expected = DEBIAN.replace("/usr/lib/cni", "/opt/cni/bin")
        + "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
    assert_eq!(
        plan_unregister(Some(&edited), &plan.record),
        UnregisterPlan::Write {
            text: expected,
            exact: false
        }
    );
    // A block the user removed by hand is not searched for.
    assert_eq!(plan_unregister(Some(DEBIAN), &plan.record), UnregisterPlan::NotFound);
    assert_eq!(plan_unregister(None, &plan.record), UnregisterPlan::Missing);
}

#[test]
fn a_created_file_the_user_added_to_is_kept_on_uninstall() {
    let plan = register(None, None);
    let edited = format!("{}[debug]\n  level = \"debug\"\n", plan.text);
    assert_eq!(
        plan_unregister(Some(&edited), &plan.record),
        UnregisterPlan::Write {
            text: "version = 2\n[debug]\n  level = \"debug\"\n".into(),
            exact: false
        }
    );
}

#[test]
fn a_new_binary_path_replaces_the_block_in_place() {
    let plan = register(Some(DEBIAN), None);
    let moved = plan_register(
        Some(&plan.text),
        Some(&plan.record),
        "/srv/runcvm/bin/runcvm-runtime",
        PathBuf::new(),
    )
    .unwrap();
    assert_eq!(moved.outcome, Registration::Updated);
    assert_eq!(
        binary_name(&moved.text).as_deref(),
        Some("/srv/runcvm/bin/runcvm-runtime")
    );
    assert_eq!(moved.record.original, DEBIAN);
    assert_eq!(
        plan_unregister(Some(&moved.text), &moved.record),
        UnregisterPlan::Write {
            text: DEBIAN.into(),
            exact: true
        }
    );
}

#[test]
fn a_block_without_a_record_is_taken_over() {
    let plan = register(Some(DEBIAN), None);
    let adopted = register(Some(&plan.text), None);
    assert_eq!(adopted.outcome, Registration::Unchanged);
    assert_eq!(adopted.record, plan.record);
}

#[test]
fn imported_files_that_configure_cri_are_recognised() {
    assert!(configures_cri(
        "[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/x\"\n"
    ));
    assert!(configures_cri("version = 2\n[plugins]\n"));
    assert!(configures_cri("[plugins.cri]\n"));
    assert!(!configures_cri(
        "version = 2\n[plugins.\"io.containerd.internal.v1.opt\"]\npath = \"/x\"\n"
    ));
    assert!(!configures_cri("[debug]\nlevel = \"info\"\n"));
}

#[test]
fn disabled_cri_is_reported() {
    let plan = register(Some("disabled_plugins = [\"cri\"]\n"), None);
    assert!(plan.facts.cri_disabled);
    assert!(!register(Some(DEBIAN), None).facts.cri_disabled);
}

#[test]
fn binary_paths_are_escaped() {
    let plan = plan_register(None, None, "/opt/run \"cvm\"\\bin/runcvm-runtime", PathBuf::new()).unwrap();
    assert_eq!(
        binary_name(&plan.text).as_deref(),
        Some("/opt/run \"cvm\"\\bin/runcvm-runtime")
    );
}

/// Lines of a containerd config in every shape the edit has to survive.
fn config_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("# a comment with [brackets] and \"quotes\"".to_owned()),
        Just("[plugins.\"io.containerd.grpc.v1.cri\"]".to_owned()),
        Just("  sandbox_image = \"registry.k8s.io/pause:3.9\" # pinned".to_owned()),
        Just("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]".to_owned()),
        Just("  SystemdCgroup = true".to_owned()),
        Just("[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]".to_owned()),
        Just(
            "  endpoint = [\n    \"https://mirror.example\", # first\n    'https://registry-1.docker.io',\n  ]"
                .to_owned()
        ),
        Just("[debug]\n  level = \"info\"".to_owned()),
        Just("[plugins.\"io.containerd.internal.v1.opt\"]\n  path = '/var/lib/containerd/opt'".to_owned()),
        Just("[timeouts]\n  \"io.containerd.timeout.shim.cleanup\" = \"5s\"".to_owned()),
        Just("[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  conf_template = \"\"\"\n[not a table]\n\"\"\"".to_owned()),
        "[a-z]{1,8}".prop_map(|k| format!("[{k}]\n  {k} = {}", k.len())),
    ]
}

fn config() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(""),
            Just("version = 2"),
            Just("version = 2\nimports = [\"/etc/containerd/conf.d/x.toml\"]"),
            Just("imports = [\n  '/a.toml', # a\n]\nversion = 2"),
            Just("version = 1"),
            Just("# header comment\nroot = \"/var/lib/containerd\"")
        ],
        proptest::collection::vec(config_line(), 0..8),
        any::<bool>(),
        prop_oneof![Just(""), Just("\n"), Just("\n\n"), Just(" # trailing")],
    )
        .prop_map(|(head, lines, crlf, tail)| {
            let mut text = std::iter::once(head.to_owned())
                .chain(lines)
                .collect::<Vec<_>>()
                .join("\n");
            text.push_str(tail);
            if crlf { text.replace('\n', "\r\n") } else { text }
        })
}

proptest! {
    #[test]
    fn install_then_uninstall_restores_every_byte(config in config()) {
        let plan = register(Some(&config), None);
        prop_assert!(plan.text.starts_with(&config));
        let name = binary_name(&plan.text);
        prop_assert_eq!(name.as_deref(), Some(BINARY));
        let again = register(Some(&plan.text), Some(&plan.record));
        prop_assert_eq!(again.outcome, Registration::Unchanged);
        prop_assert_eq!(&again.text, &plan.text);
        let record: ConfigRecord = serde_json::from_str(&serde_json::to_string(&plan.record).unwrap()).unwrap();
        prop_assert_eq!(
            plan_unregister(Some(&plan.text), &record),
            UnregisterPlan::Write { text: config.clone(), exact: true }
        );
    }

    #[test]
    fn uninstall_after_an_edit_keeps_the_edit(config in config(), extra in config_line()) {
        let plan = register(Some(&config), None);
        let edited = format!("{extra}\n{}", plan.text);
        match plan_unregister(Some(&edited), &plan.record) {
            UnregisterPlan::Write { text, exact } => {
                prop_assert!(!exact);
                prop_assert_eq!(text, format!("{extra}\n{config}"));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
