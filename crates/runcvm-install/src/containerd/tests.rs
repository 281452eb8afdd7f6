use super::config::{CRI_V1, CRI_V2, CRI_V3};
use super::*;
use proptest::prelude::*;

const BINARY: &str = "/opt/runcvm/bin/runcvm-runtime";
const CONFIG: &str = "/etc/containerd/config.toml";
const DROP_IN: &str = "/etc/containerd/conf.d/runcvm.toml";

/// Debian 12's /etc/containerd/config.toml as the containerd package ships it.
const DEBIAN: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";

/// A containerd 2.x config without imports, as `containerd config default`
/// of 2.1 starts (abridged).
const V3: &str = "version = 3\nroot = '/var/lib/containerd'\n\n[plugins]\n  [plugins.'io.containerd.cri.v1.runtime']\n    enable_selinux = false\n    [plugins.'io.containerd.cri.v1.runtime'.containerd]\n      default_runtime_name = 'runc'\n      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]\n        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n          runtime_type = 'io.containerd.runc.v2'\n          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n            SystemdCgroup = false\n";

/// A containerd 2.2-style config: it imports conf.d.
const V3_CONF_D: &str = "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n  SystemdCgroup = true\n";

fn request<'a>(
    current: Option<&'a str>,
    previous: Option<&'a ConfigRecord>,
    previous_drop_in: Option<&'a DropInRecord>,
) -> RegisterRequest<'a> {
    RegisterRequest {
        current,
        previous,
        previous_drop_in,
        binary_name: BINARY,
        config: Path::new(CONFIG),
    }
}

/// Plans for a main config without a drop-in.
fn register(current: Option<&str>, previous: Option<&ConfigRecord>) -> RegisterPlan {
    let request = request(current, previous, None);
    assert_eq!(drop_in_target(&request), Ok(None));
    plan_register(&request, None).unwrap()
}

/// Plans with the drop-in's current text, as install reads it.
fn register_with_drop_in(
    current: &str,
    previous_drop_in: Option<&DropInRecord>,
    drop_in_now: Option<&str>,
) -> RegisterPlan {
    let request = request(Some(current), None, previous_drop_in);
    assert_eq!(drop_in_target(&request), Ok(Some(PathBuf::from(DROP_IN))));
    plan_register(&request, drop_in_now).unwrap()
}

fn record(plan: &RegisterPlan) -> &ConfigRecord {
    plan.record.as_ref().expect("a block in the main config")
}

fn block(version: ConfigVersion, restate: bool, systemd: bool, nl: &str) -> String {
    block_text(
        version,
        BINARY,
        restate,
        systemd,
        nl,
        HandlerOptions::TerminationMessage,
    )
}

/// The handler's `BinaryName`, under any version's CRI plugin.
fn binary_name(text: &str) -> Option<String> {
    let doc = toml_edit::Document::parse(text).unwrap();
    [CRI_V3, CRI_V2, CRI_V1].iter().find_map(|cri| {
        doc.get("plugins")?
            .get(cri)?
            .get("containerd")?
            .get("runtimes")?
            .get(HANDLER)?
            .get("options")?
            .get("BinaryName")?
            .as_str()
            .map(str::to_owned)
    })
}

/// The block as the builds before the handler options wrote it.
fn legacy_block(cri: &str, restate: bool, nl: &str) -> String {
    let runtimes = format!("plugins.{}.containerd.runtimes", config::format_key(cri));
    let runc = if restate {
        format!("{RESTATED}{nl}[{runtimes}.runc]{nl}  runtime_type = \"io.containerd.runc.v2\"{nl}")
    } else {
        String::new()
    };
    format!(
        "{BEGIN}{nl}{runc}[{runtimes}.runcvm]{nl}  runtime_type = \"io.containerd.runc.v2\"{nl}[{runtimes}.runcvm.options]{nl}  BinaryName = \"{BINARY}\"{nl}{END}{nl}"
    )
}

#[test]
fn the_v2_block_registers_the_handler_with_the_shim_our_runtime_and_its_options() {
    // Updated from the block before containerd 2.x support: it now carries
    // privileged_without_host_devices and container_annotations.
    let text = block(ConfigVersion::V2, false, false, "\n");
    assert_eq!(
        text,
        format!(
            "{BEGIN}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runcvm]\n  runtime_type = \"io.containerd.runc.v2\"\n  privileged_without_host_devices = true\n  container_annotations = [\"io.kubernetes.container.terminationMessagePath\"]\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runcvm.options]\n  BinaryName = \"/opt/runcvm/bin/runcvm-runtime\"\n{END}\n"
        )
    );
    assert_eq!(binary_name(&text).as_deref(), Some(BINARY));
    let doc = toml_edit::Document::parse(text.as_str()).unwrap();
    let runtime = &doc["plugins"][CRI_V2]["containerd"]["runtimes"][HANDLER];
    assert_eq!(runtime["privileged_without_host_devices"].as_bool(), Some(true));
    let annotations = runtime["container_annotations"].as_array().unwrap();
    assert_eq!(
        annotations
            .iter()
            .filter_map(toml_edit::Value::as_str)
            .collect::<Vec<_>>(),
        [TERMINATION_MESSAGE_ANNOTATION]
    );
}

#[test]
fn the_v3_block_uses_the_cri_runtime_plugin_and_restates_nothing() {
    let plan = register(Some(V3), None);
    let expected = format!(
        "{BEGIN}\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runcvm]\n  runtime_type = \"io.containerd.runc.v2\"\n  privileged_without_host_devices = true\n  container_annotations = [\"io.kubernetes.container.terminationMessagePath\"]\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runcvm.options]\n  BinaryName = \"/opt/runcvm/bin/runcvm-runtime\"\n{END}\n"
    );
    assert_eq!(plan.text, format!("{V3}\n{expected}"));
    assert_eq!(plan.facts.version, ConfigVersion::V3);
    assert!(!plan.facts.restates_runc);
    assert_eq!(plan.outcome, Registration::Added);
    assert!(plan.write_main && plan.drop_in.is_none());
    assert_eq!(binary_name(&plan.text).as_deref(), Some(BINARY));
    // Even a version 3 config naming no runtime: containerd 2.x keeps runc.
    let bare = register(Some("version = 3\n"), None);
    assert!(!bare.facts.restates_runc);
    assert!(!bare.text.contains("runtimes.runc]"));
    // Uninstall restores every byte; a second install changes nothing.
    assert_eq!(
        plan_unregister(Some(&plan.text), record(&plan)),
        UnregisterPlan::Write {
            text: V3.into(),
            exact: true
        }
    );
    let again = register(Some(&plan.text), Some(record(&plan)));
    assert_eq!((again.outcome, again.write_main), (Registration::Unchanged, false));
}

#[test]
fn v3_imports_that_name_no_drop_in_folder_get_the_block_in_the_main_file() {
    let config = "version = 3\nimports = ['/etc/containerd/extra.toml']\r\n";
    let plan = register(Some(config), None);
    assert!(plan.text.starts_with(config));
    assert!(plan.text.ends_with(&block(ConfigVersion::V3, false, false, "\r\n")));
}

#[test]
fn a_v3_config_importing_conf_d_gets_a_drop_in_and_stays_untouched() {
    let plan = register_with_drop_in(V3_CONF_D, None, None);
    assert_eq!(plan.outcome, Registration::Added);
    assert_eq!((plan.text.as_str(), plan.write_main), (V3_CONF_D, false));
    assert_eq!(plan.record, None);
    assert!(plan.facts.systemd_cgroup);
    let drop_in = plan.drop_in.as_ref().unwrap();
    assert!(drop_in.write);
    assert_eq!(drop_in.record.path, Path::new(DROP_IN));
    assert_eq!(drop_in.record.config, Path::new(CONFIG));
    assert_eq!(drop_in.record.text, drop_in::text(BINARY, true));
    assert!(drop_in.record.text.contains("\nversion = 3\n"));
    assert!(drop_in.record.text.ends_with("  SystemdCgroup = true\n"));
    assert_eq!(binary_name(&drop_in.record.text).as_deref(), Some(BINARY));

    // Installed again: nothing to write.
    let again = register_with_drop_in(V3_CONF_D, Some(&drop_in.record), Some(&drop_in.record.text));
    assert_eq!(again.outcome, Registration::Unchanged);
    assert!(!again.write_main && !again.drop_in.as_ref().unwrap().write);
    assert_eq!(again.drop_in.as_ref().unwrap().record, drop_in.record);
    assert_eq!(again.stale_drop_in, None);

    // Without a manifest, the same file is taken over.
    let adopted = register_with_drop_in(V3_CONF_D, None, Some(&drop_in.record.text));
    assert_eq!(adopted.outcome, Registration::Unchanged);

    // A new BinaryName rewrites install's own file.
    let request = RegisterRequest {
        binary_name: "/srv/runcvm/bin/runcvm-runtime",
        ..request(Some(V3_CONF_D), None, Some(&drop_in.record))
    };
    let moved = plan_register(&request, Some(&drop_in.record.text)).unwrap();
    assert_eq!(moved.outcome, Registration::Updated);
    let moved_drop_in = moved.drop_in.unwrap();
    assert!(moved_drop_in.write);
    assert_eq!(
        binary_name(&moved_drop_in.record.text).as_deref(),
        Some("/srv/runcvm/bin/runcvm-runtime")
    );
}

#[test]
fn relative_imports_resolve_against_the_config_folder() {
    let config = "version = 3\nimports = [\"conf.d/*.toml\"]\n";
    let request = request(Some(config), None, None);
    assert_eq!(drop_in_target(&request), Ok(Some(PathBuf::from(DROP_IN))));
    // A version 2 main file never gets a drop-in (containerd 2.1 would not
    // migrate it any more), nor a missing one.
    let v2 = "version = 2\nimports = [\"conf.d/*.toml\"]\n";
    assert_eq!(drop_in_target(&self::request(Some(v2), None, None)), Ok(None));
    assert_eq!(drop_in_target(&self::request(None, None, None)), Ok(None));
    assert!(
        register(Some(v2), None)
            .text
            .contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runcvm]")
    );
}

#[test]
fn a_drop_in_that_is_not_installs_is_refused() {
    let request = request(Some(V3_CONF_D), None, None);
    let err = plan_register(&request, Some("version = 3\n# mine\n")).unwrap_err();
    assert_eq!(err, ConfigError::DropInNotOurs(PathBuf::from(DROP_IN)));
    assert!(err.to_string().contains("move it out of the way"), "{err}");
    // Nor one install wrote and the user edited since.
    let plan = register_with_drop_in(V3_CONF_D, None, None);
    let record = plan.drop_in.unwrap().record;
    let edited = format!("{}# edited\n", record.text);
    let request = self::request(Some(V3_CONF_D), None, Some(&record));
    assert!(matches!(
        plan_register(&request, Some(&edited)),
        Err(ConfigError::DropInNotOurs(_))
    ));
}

#[test]
fn a_runcvm_runtime_in_a_v3_main_file_is_refused_with_a_drop_in_too() {
    let config = format!("{V3_CONF_D}[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runcvm]\n");
    let request = request(Some(&config), None, None);
    let err = plan_register(&request, None).unwrap_err();
    assert!(matches!(err, ConfigError::Conflict { line: 6, .. }), "{err:?}");
    assert!(err.to_string().contains("runtime named runcvm"), "{err}");
}

#[test]
fn the_handler_moves_between_the_main_file_and_the_drop_in() {
    // Installed into a version 3 file without imports ...
    let first = register(Some(V3), None);
    // ... which then imports conf.d: the block leaves the main file.
    let with_imports = first
        .text
        .replacen("version = 3\n", "version = 3\nimports = ['conf.d/*.toml']\n", 1);
    let main_record = record(&first).clone();
    let moved_request = RegisterRequest {
        previous: Some(&main_record),
        ..request(Some(&with_imports), None, None)
    };
    assert_eq!(drop_in_target(&moved_request), Ok(Some(PathBuf::from(DROP_IN))));
    let moved = plan_register(&moved_request, None).unwrap();
    assert_eq!(moved.outcome, Registration::Updated);
    assert!(moved.write_main);
    assert_eq!(
        moved.text,
        V3.replacen("version = 3\n", "version = 3\nimports = ['conf.d/*.toml']\n", 1)
    );
    assert_eq!(moved.record, None);
    let drop_in = moved.drop_in.unwrap().record;

    // And back when the import goes: the old drop-in is stale.
    let back = plan_register(&request(Some(V3), None, Some(&drop_in)), None).unwrap();
    assert_eq!(back.outcome, Registration::Updated);
    assert_eq!(back.stale_drop_in.as_ref(), Some(&drop_in));
    assert_eq!(back.text, first.text);
}

#[test]
fn containerds_default_runtime_is_restated_when_a_1x_config_names_none() {
    let text = block(ConfigVersion::V2, true, false, "\n");
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
        plan_unregister(Some(&plan.text), record(&plan)),
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
        format!("version = 2\n\n{}", block(ConfigVersion::V2, true, false, "\n"))
    );
    assert_eq!(plan.outcome, Registration::Added);
    assert!(record(&plan).created);
    assert_eq!(record(&plan).original, SCAFFOLD);
    assert_eq!(plan_unregister(Some(&plan.text), record(&plan)), UnregisterPlan::Delete);
}

#[test]
fn debians_config_gets_the_block_appended_and_nothing_else() {
    let plan = register(Some(DEBIAN), None);
    assert_eq!(
        plan.text,
        format!("{DEBIAN}\n{}", block(ConfigVersion::V2, true, false, "\n"))
    );
    assert_eq!(
        (record(&plan).original.as_str(), record(&plan).offset),
        (DEBIAN, DEBIAN.len())
    );
    assert!(!record(&plan).created);
    assert_eq!(
        plan_unregister(Some(&plan.text), record(&plan)),
        UnregisterPlan::Write {
            text: DEBIAN.into(),
            exact: true
        }
    );
}

#[test]
fn a_second_install_changes_nothing() {
    for current in [None, Some(DEBIAN), Some(V3), Some("# only a comment, no newline")] {
        let first = register(current, None);
        let second = register(Some(&first.text), first.record.as_ref());
        assert_eq!(second.outcome, Registration::Unchanged, "{current:?}");
        assert!(!second.write_main);
        assert_eq!(second.text, first.text);
        assert_eq!(second.record, first.record);
    }
}

#[test]
fn crlf_comments_and_a_missing_final_newline_are_kept() {
    let v2 = "# managed by hand\r\nversion = 2 # v2\r\n\r\n[plugins.\"io.containerd.grpc.v1.cri\"]\r\n  sandbox_image = \"pause:3.9\" # pinned";
    let v3 = "# managed by hand\r\nversion = 3\r\n\r\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\r\n  SystemdCgroup = true";
    for (config, version, restate, systemd) in [
        (v2, ConfigVersion::V2, true, false),
        (v3, ConfigVersion::V3, false, true),
    ] {
        let plan = register(Some(config), None);
        assert_eq!(
            plan.text,
            format!("{config}\r\n\r\n{}", block(version, restate, systemd, "\r\n"))
        );
        assert!(!plan.text.replace("\r\n", "").contains('\n'), "only CRLF line ends");
        assert_eq!(binary_name(&plan.text).as_deref(), Some(BINARY));
        assert_eq!(
            plan_unregister(Some(&plan.text), record(&plan)),
            UnregisterPlan::Write {
                text: config.into(),
                exact: true
            }
        );
    }
    // A CRLF main file with a drop-in stays as it is.
    let crlf = V3_CONF_D.replace('\n', "\r\n");
    let plan = register_with_drop_in(&crlf, None, None);
    assert_eq!((plan.text.as_str(), plan.write_main), (crlf.as_str(), false));
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
            format!("\n{}", block(ConfigVersion::V2, true, false, "\n"))
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
    assert_eq!(
        plan.text,
        format!("{config}\n{}", block(ConfigVersion::V1, true, false, "\n"))
    );
    assert!(plan.text.contains("[plugins.cri.containerd.runtimes.runcvm]"));
    assert_eq!(plan.facts.version, ConfigVersion::V1);
    assert_eq!(
        plan_unregister(Some(&plan.text), record(&plan)),
        UnregisterPlan::Write {
            text: config.into(),
            exact: true
        }
    );
}

#[test]
fn systemd_cgroup_follows_the_default_runtime() {
    let runc = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n";
    assert!(
        register(Some(runc), None)
            .text
            .ends_with(&block(ConfigVersion::V2, false, true, "\n"))
    );
    assert!(register(Some(runc), None).facts.systemd_cgroup);
    let crun = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"crun\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun.options]\n  SystemdCgroup = true\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = false\n";
    assert!(register(Some(crun), None).facts.systemd_cgroup);
    let off = runc.replace("true", "false");
    assert!(!register(Some(&off), None).facts.systemd_cgroup);
    // Version 3 reads the CRI runtime plugin, not the version 2 name.
    let v3 = runc.replace("version = 2", "version = 3");
    assert!(!register(Some(&v3), None).facts.systemd_cgroup);
    let v3 = v3.replace("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime");
    assert!(register(Some(&v3), None).facts.systemd_cgroup);
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
        (
            "version = 3\n\n[[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]]\n",
            3,
            "cannot extend",
        ),
        (
            "version = 3\nplugins = { 'io.containerd.cri.v1.runtime' = { containerd = { runtimes = { runcvm = {} } } } }\n",
            2,
            "runtime named runcvm",
        ),
    ];
    for (config, line, why) in cases {
        let err = plan_register(&request(Some(config), None, None), None).unwrap_err();
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
    let refuse = |config: &str| plan_register(&request(Some(config), None, None), None).unwrap_err();
    let err = refuse("version = 4\n");
    assert_eq!(
        err,
        ConfigError::Version {
            raw: "4".into(),
            line: 1
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("containerd 1.x reads version 1 or 2, containerd 2.x reads version 3"),
        "{message}"
    );
    assert!(message.contains("docs/install.md"), "{message}");
    let err = refuse("# x\nversion = '3'\n");
    assert_eq!(
        err,
        ConfigError::VersionNotANumber {
            raw: "'3'".into(),
            line: 2
        }
    );
    assert!(err.to_string().contains("bare integer"), "{err}");
    assert!(matches!(
        refuse("version = 2.0\n"),
        ConfigError::VersionNotANumber { .. }
    ));
    let err = refuse("version = 2\n[plugins\n");
    assert!(matches!(err, ConfigError::Parse { line: 2, .. }), "{err:?}");
    // The drop-in target is refused the same way.
    assert!(drop_in_target(&request(Some("version = 4\n"), None, None)).is_err());
}

#[test]
fn edits_after_install_are_kept_and_only_the_block_is_removed() {
    let plan = register(Some(DEBIAN), None);
    let edited = plan.text.replace("/usr/lib/cni", "/opt/cni/bin")
        + "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
    // A second install leaves an edited file alone.
    let again = register(Some(&edited), plan.record.as_ref());
    assert_eq!(
        (again.outcome, again.text.as_str()),
        (Registration::Unchanged, edited.as_str())
    );
    // Uninstall takes out the block and nothing else.
    let expected = DEBIAN.replace("/usr/lib/cni", "/opt/cni/bin")
        + "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
    assert_eq!(
        plan_unregister(Some(&edited), record(&plan)),
        UnregisterPlan::Write {
            text: expected,
            exact: false
        }
    );
    // A block the user removed by hand is not searched for.
    assert_eq!(plan_unregister(Some(DEBIAN), record(&plan)), UnregisterPlan::NotFound);
    assert_eq!(plan_unregister(None, record(&plan)), UnregisterPlan::Missing);
}

#[test]
fn a_created_file_the_user_added_to_is_kept_on_uninstall() {
    let plan = register(None, None);
    let edited = format!("{}[debug]\n  level = \"debug\"\n", plan.text);
    assert_eq!(
        plan_unregister(Some(&edited), record(&plan)),
        UnregisterPlan::Write {
            text: "version = 2\n[debug]\n  level = \"debug\"\n".into(),
            exact: false
        }
    );
}

#[test]
fn a_new_binary_path_replaces_the_block_in_place() {
    let plan = register(Some(DEBIAN), None);
    let request = RegisterRequest {
        binary_name: "/srv/runcvm/bin/runcvm-runtime",
        ..request(Some(&plan.text), plan.record.as_ref(), None)
    };
    let moved = plan_register(&request, None).unwrap();
    assert_eq!(moved.outcome, Registration::Updated);
    assert_eq!(
        binary_name(&moved.text).as_deref(),
        Some("/srv/runcvm/bin/runcvm-runtime")
    );
    assert_eq!(record(&moved).original, DEBIAN);
    assert_eq!(
        plan_unregister(Some(&moved.text), record(&moved)),
        UnregisterPlan::Write {
            text: DEBIAN.into(),
            exact: true
        }
    );
}

#[test]
fn a_block_without_a_record_is_taken_over() {
    for config in [DEBIAN, V3] {
        let plan = register(Some(config), None);
        let adopted = register(Some(&plan.text), None);
        assert_eq!(adopted.outcome, Registration::Unchanged);
        assert_eq!(adopted.record, plan.record);
    }
    // Also the block of an earlier build, which it brings up to date.
    let old = format!("{DEBIAN}\n{}", legacy_block(CRI_V2, true, "\n"));
    let adopted = register(Some(&old), None);
    assert_eq!(adopted.outcome, Registration::Updated);
    assert_eq!(adopted.text, register(Some(DEBIAN), None).text);
    // And the block of the builds whose pods could opt out of their VM
    // (`pod_annotations`), on both config versions: replaced by one
    // without.
    for (config, version) in [(DEBIAN, ConfigVersion::V2), (V3, ConfigVersion::V3)] {
        let restate = version != ConfigVersion::V3;
        let before = block_text(version, BINARY, restate, false, "\n", HandlerOptions::PodVmOptOut);
        assert!(before.contains("  pod_annotations = [\"runcvm.io/pod-vm\"]\n"));
        let old = format!("{config}\n{before}");
        let adopted = register(Some(&old), None);
        assert_eq!(adopted.outcome, Registration::Updated, "{version:?}");
        assert_eq!(adopted.text, register(Some(config), None).text, "{version:?}");
        assert!(!adopted.text.contains("pod_annotations"));
    }
}

/// A manifest record written by the builds before containerd 2.x support
/// (the same JSON shape, the block without the handler options).
fn earlier_build_record(config: &str, nl: &str) -> (String, ConfigRecord) {
    let inserted = format!("{nl}{}", legacy_block(CRI_V2, true, nl));
    let json = serde_json::json!({
        "path": CONFIG,
        "created": false,
        "created_dirs": [],
        "original": config,
        "offset": config.len(),
        "inserted": inserted,
    });
    let record: ConfigRecord = serde_json::from_value(json).unwrap();
    (format!("{config}{inserted}"), record)
}

#[test]
fn an_earlier_builds_record_still_uninstalls_and_reinstalls() {
    for (config, nl) in [(DEBIAN.to_owned(), "\n"), (DEBIAN.replace('\n', "\r\n"), "\r\n")] {
        let (installed, record) = earlier_build_record(&config, nl);
        assert_eq!(
            plan_unregister(Some(&installed), &record),
            UnregisterPlan::Write {
                text: config.clone(),
                exact: true
            }
        );
        // Edited since: only the old block goes.
        let edited = format!("# note{nl}{installed}");
        assert_eq!(
            plan_unregister(Some(&edited), &record),
            UnregisterPlan::Write {
                text: format!("# note{nl}{config}"),
                exact: false
            }
        );
        // A new install replaces the old block in place, and still restores.
        let plan = register(Some(&installed), Some(&record));
        assert_eq!(plan.outcome, Registration::Updated);
        assert_eq!(
            plan.text,
            format!("{config}{nl}{}", block(ConfigVersion::V2, true, false, nl))
        );
        assert_eq!(
            plan_unregister(Some(&plan.text), self::record(&plan)),
            UnregisterPlan::Write {
                text: config.clone(),
                exact: true
            }
        );
    }
}

#[test]
fn imported_files_that_configure_cri_or_define_the_handler_are_recognised() {
    assert!(configures_cri(
        "[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/x\"\n"
    ));
    assert!(!configures_cri("[debug]\nlevel = \"info\"\n"));
    assert!(!configures_cri("not toml ["));
    assert!(defines_handler(&drop_in::text(BINARY, false)));
    assert!(!defines_handler(V3));
}

#[test]
fn disabled_cri_is_reported() {
    let plan = register(Some("disabled_plugins = [\"cri\"]\n"), None);
    assert!(plan.facts.cri_disabled);
    assert!(!register(Some(DEBIAN), None).facts.cri_disabled);
}

#[test]
fn binary_paths_are_escaped() {
    let request = RegisterRequest {
        binary_name: "/opt/run \"cvm\"\\bin/runcvm-runtime",
        ..request(None, None, None)
    };
    let plan = plan_register(&request, None).unwrap();
    assert_eq!(
        binary_name(&plan.text).as_deref(),
        Some("/opt/run \"cvm\"\\bin/runcvm-runtime")
    );
}

/// Lines of a containerd config in every shape the edit has to survive.
const CONFIG_LINES: &[&str] = &[
    "",
    "# a comment with [brackets] and \"quotes\"",
    "[plugins.\"io.containerd.grpc.v1.cri\"]",
    "  sandbox_image = \"registry.k8s.io/pause:3.9\" # pinned",
    "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]",
    "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
    "  SystemdCgroup = true",
    "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]",
    "  endpoint = [\n    \"https://mirror.example\", # first\n    'https://registry-1.docker.io',\n  ]",
    "[debug]\n  level = \"info\"",
    "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = '/var/lib/containerd/opt'",
    "[timeouts]\n  \"io.containerd.timeout.shim.cleanup\" = \"5s\"",
    "[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  conf_template = \"\"\"\n[not a table]\n\"\"\"",
];

/// One line of a config, for edits made after install.
fn config_line() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(CONFIG_LINES).prop_map(str::to_owned),
        "[a-z]{1,8}".prop_map(|k| format!("[x{k}]\n  {k} = {}", k.len())),
    ]
}

/// Valid configs: a head, then each line at most once (TOML allows no table
/// or key twice), in any order.
fn config() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(""),
            Just("version = 2"),
            Just("version = 2\nimports = [\"/etc/containerd/conf.d/x.toml\"]"),
            Just("imports = [\n  '/a.toml', # a\n]\nversion = 2"),
            Just("version = 1"),
            Just("version = 3"),
            Just("version = 3\nimports = ['/etc/containerd/extra.toml']"),
            Just("# header comment\nroot = \"/var/lib/containerd\"")
        ],
        proptest::sample::subsequence(CONFIG_LINES, 0..8).prop_shuffle(),
        proptest::option::of("[a-z]{1,8}".prop_map(|k| format!("[x{k}]\n  {k} = {}", k.len()))),
        any::<bool>(),
        prop_oneof![Just(""), Just("\n"), Just("\n\n"), Just(" # trailing")],
    )
        .prop_map(|(head, lines, table, crlf, tail)| {
            let mut text = std::iter::once(head.to_owned())
                .chain(lines.into_iter().map(str::to_owned))
                .chain(table)
                .collect::<Vec<_>>()
                .join("\n");
            text.push_str(tail);
            if crlf { text.replace('\n', "\r\n") } else { text }
        })
        .prop_filter("containerd reads only valid TOML", |text| {
            toml_edit::Document::parse(text.as_str()).is_ok()
        })
}

proptest! {
    #[test]
    fn install_then_uninstall_restores_every_byte(config in config()) {
        let plan = register(Some(&config), None);
        prop_assert!(plan.text.starts_with(&config));
        let name = binary_name(&plan.text);
        prop_assert_eq!(name.as_deref(), Some(BINARY));
        let again = register(Some(&plan.text), plan.record.as_ref());
        prop_assert_eq!(again.outcome, Registration::Unchanged);
        prop_assert_eq!(&again.text, &plan.text);
        let record: ConfigRecord = serde_json::from_str(&serde_json::to_string(record(&plan)).unwrap()).unwrap();
        prop_assert_eq!(again.record.as_ref(), Some(&record));
        prop_assert_eq!(
            plan_unregister(Some(&plan.text), &record),
            UnregisterPlan::Write { text: config.clone(), exact: true }
        );
    }

    #[test]
    fn uninstall_after_an_edit_keeps_the_edit(config in config(), extra in config_line()) {
        let plan = register(Some(&config), None);
        let edited = format!("{extra}\n{}", plan.text);
        match plan_unregister(Some(&edited), record(&plan)) {
            UnregisterPlan::Write { text, exact } => {
                prop_assert!(!exact);
                prop_assert_eq!(text, format!("{extra}\n{config}"));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
