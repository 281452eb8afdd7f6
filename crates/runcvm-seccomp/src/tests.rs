//! The compiled program is run by a small classic-BPF interpreter and
//! checked against the profile's meaning, evaluated directly.

use super::*;
use proptest::prelude::*;

const X86_64: u32 = 0xc000_003e;

/// One call as seccomp(2) hands it to the filter.
#[derive(Debug, Clone, Copy)]
struct Call {
    arch: u32,
    nr: u32,
    args: [u64; 6],
}

impl Call {
    fn word(&self, offset: u32) -> u32 {
        match offset {
            0 => self.nr,
            4 => self.arch,
            16..=63 if offset % 4 == 0 => {
                let arg = self.args[((offset - 16) / 8) as usize];
                if (offset - 16) % 8 == 0 {
                    (arg & 0xffff_ffff) as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("load from offset {offset}"),
        }
    }
}

/// Runs a program the way the kernel's classic BPF interpreter does, for
/// the instructions the compiler emits.
fn run(program: &[Instruction], call: &Call) -> u32 {
    let (mut pc, mut a) = (0usize, 0u32);
    loop {
        let insn = program[pc];
        pc += 1;
        match insn.code {
            0x20 => a = call.word(insn.k),
            0x54 => a &= insn.k,
            0x06 => return insn.k,
            0x05 => pc += insn.k as usize,
            0x15 | 0x25 | 0x35 => {
                let holds = match insn.code {
                    0x15 => a == insn.k,
                    0x25 => a > insn.k,
                    _ => a >= insn.k,
                };
                pc += usize::from(if holds { insn.jt } else { insn.jf });
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

fn ret(action: Action, errno: Option<u32>) -> u32 {
    match action {
        Action::Kill | Action::KillThread => 0,
        Action::KillProcess => 0x8000_0000,
        Action::Trap => 0x0003_0000,
        Action::Errno => 0x0005_0000 | errno.unwrap_or(1) & 0xffff,
        Action::Trace => 0x7ff0_0000 | errno.unwrap_or(1) & 0xffff,
        Action::Allow => 0x7fff_0000,
        Action::Log => 0x7ffc_0000,
        Action::Notify => unreachable!(),
    }
}

/// What the profile means for `call` (the module docs of `compile`).
fn reference(profile: &SeccompProfile, call: &Call) -> u32 {
    if call.arch != X86_64 {
        return 0x8000_0000;
    }
    let default = ret(profile.default_action, profile.default_errno_ret);
    if call.nr >= 0x4000_0000 {
        return default;
    }
    let refusing = !matches!(profile.default_action, Action::Allow | Action::Log);
    if refusing && compile::newest_named(profile).is_some_and(|newest| call.nr > newest) {
        return 0x0005_0026;
    }
    let rules: Vec<&SyscallRule> = profile
        .syscalls
        .iter()
        .filter(|r| ret(r.action, r.errno_ret) != default)
        .filter(|r| r.names.iter().any(|n| syscall_number(n) == Some(call.nr)))
        .collect();
    if let Some(rule) = rules.iter().find(|r| r.args.is_empty()) {
        return ret(rule.action, rule.errno_ret);
    }
    rules
        .iter()
        .find(|r| {
            r.args
                .iter()
                .all(|c| c.op.holds(call.args[c.index as usize], c.value, c.value_two))
        })
        .map_or(default, |r| ret(r.action, r.errno_ret))
}

fn rule(names: &[&str], action: Action, args: Vec<ArgCondition>) -> SyscallRule {
    SyscallRule {
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        action,
        errno_ret: None,
        args,
    }
}

fn profile(default: Action, syscalls: Vec<SyscallRule>) -> SeccompProfile {
    SeccompProfile {
        default_action: default,
        default_errno_ret: None,
        architectures: vec!["SCMP_ARCH_X86_64".into()],
        flags: Vec::new(),
        listener_path: None,
        syscalls,
    }
}

fn call(nr: u32, args: [u64; 6]) -> Call {
    Call { arch: X86_64, nr, args }
}

fn nr(name: &str) -> u32 {
    syscall_number(name).unwrap()
}

#[test]
fn the_table_is_sorted_and_knows_the_common_calls() {
    assert!(table::SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(syscall_number("read"), Some(0));
    assert_eq!(syscall_number("write"), Some(1));
    assert_eq!(syscall_number("clone3"), Some(435));
    assert_eq!(syscall_number("mkdirat"), Some(258));
    assert_eq!(syscall_number("socketcall"), None, "32-bit only");
}

#[test]
fn an_allow_list_allows_its_calls_and_refuses_the_rest_with_eperm() {
    let profile = profile(
        Action::Errno,
        vec![rule(&["read", "write", "exit_group"], Action::Allow, vec![])],
    );
    let filter = compile(&profile).unwrap();
    assert_eq!(run(&filter.program, &call(nr("read"), [0; 6])), 0x7fff_0000);
    assert_eq!(run(&filter.program, &call(nr("exit_group"), [0; 6])), 0x7fff_0000);
    assert_eq!(run(&filter.program, &call(nr("mkdir"), [0; 6])), 0x0005_0001);
    let other_arch = Call {
        arch: 0x4000_0003,
        ..call(0, [0; 6])
    };
    assert_eq!(run(&filter.program, &other_arch), 0x8000_0000);
    assert_eq!(run(&filter.program, &call(0x4000_0000, [0; 6])), 0x0005_0001);
}

#[test]
fn errno_values_conditions_and_unknown_names_as_containerd_writes_them() {
    let mut clone3 = rule(&["clone3"], Action::Errno, vec![]);
    clone3.errno_ret = Some(38);
    let personality = rule(
        &["personality"],
        Action::Allow,
        vec![ArgCondition {
            index: 0,
            value: 8,
            value_two: 0,
            op: Operator::Equal,
        }],
    );
    let clone = rule(
        &["clone"],
        Action::Allow,
        vec![ArgCondition {
            index: 0,
            value: 2_114_060_288,
            value_two: 0,
            op: Operator::MaskedEqual,
        }],
    );
    let profile = profile(
        Action::Errno,
        vec![
            rule(&["read", "socketcall"], Action::Allow, vec![]),
            personality,
            clone,
            clone3,
        ],
    );
    let filter = compile(&profile).unwrap();
    assert_eq!(filter.skipped_names, vec!["socketcall".to_owned()]);
    assert_eq!(run(&filter.program, &call(nr("clone3"), [0; 6])), 0x0005_0026);
    assert_eq!(
        run(&filter.program, &call(nr("personality"), [8, 0, 0, 0, 0, 0])),
        0x7fff_0000
    );
    assert_eq!(
        run(&filter.program, &call(nr("personality"), [9, 0, 0, 0, 0, 0])),
        0x0005_0001
    );
    // CLONE_NEWNS (0x20000) is among the masked flags: refused.
    assert_eq!(
        run(&filter.program, &call(nr("clone"), [0x20000, 0, 0, 0, 0, 0])),
        0x0005_0001
    );
    assert_eq!(
        run(&filter.program, &call(nr("clone"), [0x11, 0, 0, 0, 0, 0])),
        0x7fff_0000
    );
}

#[test]
fn what_the_guest_cannot_honour_is_refused() {
    let mut notify = profile(Action::Allow, vec![rule(&["mkdir"], Action::Notify, vec![])]);
    notify.listener_path = Some("/run/agent.sock".into());
    assert_eq!(compile(&notify).unwrap_err(), SeccompError::Notify);
    let mut flagged = profile(Action::Allow, vec![]);
    flagged.flags = vec!["SECCOMP_FILTER_FLAG_NEW_LISTENER".into()];
    assert!(matches!(compile(&flagged), Err(SeccompError::Flag(_))));
    flagged.flags = vec![
        "SECCOMP_FILTER_FLAG_LOG".into(),
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW".into(),
    ];
    assert_eq!(compile(&flagged).unwrap().flags, 6);
    let bad_index = profile(
        Action::Allow,
        vec![rule(
            &["mkdir"],
            Action::Errno,
            vec![ArgCondition {
                index: 6,
                value: 0,
                value_two: 0,
                op: Operator::Equal,
            }],
        )],
    );
    assert_eq!(compile(&bad_index).unwrap_err(), SeccompError::ArgIndex(6));
}

#[test]
fn every_known_call_allowed_stays_far_under_the_kernels_limit() {
    let names: Vec<&str> = table::SYSCALLS.iter().map(|(n, _)| *n).collect();
    let profile = profile(Action::Errno, vec![rule(&names, Action::Allow, vec![])]);
    let filter = compile(&profile).unwrap();
    assert!(filter.program.len() < 2000, "{} instructions", filter.program.len());
    for (name, number) in table::SYSCALLS {
        assert_eq!(run(&filter.program, &call(*number, [0; 6])), 0x7fff_0000, "{name}");
    }
    // Past every call the profile names: ENOSYS, as runc's stub answers.
    assert_eq!(run(&filter.program, &call(463, [0; 6])), 0x0005_0026);
}

#[test]
fn calls_newer_than_the_profile_are_enosys_unless_the_default_allows() {
    let refusing = profile(Action::Errno, vec![rule(&["read", "openat"], Action::Allow, vec![])]);
    let filter = compile(&refusing).unwrap();
    assert_eq!(run(&filter.program, &call(nr("openat"), [0; 6])), 0x7fff_0000);
    assert_eq!(run(&filter.program, &call(nr("clone3"), [0; 6])), 0x0005_0026);
    assert_eq!(
        run(&filter.program, &call(nr("mkdir"), [0; 6])),
        0x0005_0001,
        "older: the default"
    );
    let allowing = profile(Action::Allow, vec![rule(&["mkdir"], Action::Errno, vec![])]);
    let filter = compile(&allowing).unwrap();
    assert_eq!(run(&filter.program, &call(nr("clone3"), [0; 6])), 0x7fff_0000);
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Allow),
        Just(Action::Errno),
        Just(Action::KillProcess),
        Just(Action::Log),
        Just(Action::Trap),
        Just(Action::Trace),
        Just(Action::KillThread),
    ]
}

fn arb_op() -> impl Strategy<Value = Operator> {
    prop_oneof![
        Just(Operator::Equal),
        Just(Operator::NotEqual),
        Just(Operator::Less),
        Just(Operator::LessOrEqual),
        Just(Operator::Greater),
        Just(Operator::GreaterOrEqual),
        Just(Operator::MaskedEqual),
    ]
}

/// Values near the 32-bit boundary, where a wrong high/low split shows.
fn arb_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..4,
        Just(u64::from(u32::MAX)),
        Just(1u64 << 32),
        Just((1u64 << 32) + 1),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn arb_condition() -> impl Strategy<Value = ArgCondition> {
    (0u32..3, arb_value(), arb_value(), arb_op()).prop_map(|(index, value, value_two, op)| ArgCondition {
        index,
        value,
        value_two,
        op,
    })
}

/// A few calls only, so rules overlap often.
const NAMES: [&str; 6] = ["read", "write", "openat", "clone", "mkdir", "personality"];

fn arb_rule() -> impl Strategy<Value = SyscallRule> {
    (
        proptest::sample::subsequence(NAMES.to_vec(), 1..3),
        arb_action(),
        proptest::option::of(0u32..200),
        proptest::collection::vec(arb_condition(), 0..3),
    )
        .prop_map(|(names, action, errno_ret, args)| SyscallRule {
            names: names.into_iter().map(str::to_owned).collect(),
            action,
            errno_ret,
            args,
        })
}

proptest! {
    #[test]
    fn the_program_means_what_the_profile_says(
        default in arb_action(),
        default_errno in proptest::option::of(0u32..200),
        rules in proptest::collection::vec(arb_rule(), 0..8),
        which in 0usize..NAMES.len(),
        args in proptest::array::uniform6(arb_value()),
    ) {
        let mut profile = profile(default, rules);
        profile.default_errno_ret = default_errno;
        let filter = compile(&profile).unwrap();
        let listed = call(nr(NAMES[which]), args);
        prop_assert_eq!(run(&filter.program, &listed), reference(&profile, &listed));
        let unlisted = call(nr("getpid"), args);
        prop_assert_eq!(run(&filter.program, &unlisted), reference(&profile, &unlisted));
    }
}
