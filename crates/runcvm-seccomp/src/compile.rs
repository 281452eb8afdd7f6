//! Compiling a [`SeccompProfile`] to the classic BPF program seccomp(2)
//! runs on every system call of the workload.
//!
//! What a call gets, as runc with libseccomp decides it:
//! - a call of another architecture: killed (the guest runs x86_64 only);
//! - a call numbered above every call the profile names, when the default
//!   action would refuse it: `ENOSYS`, as runc's stub answers calls newer
//!   than the profile, so programs fall back as on a kernel without them;
//! - the call's first unconditional rule, if it has one;
//! - else its first rule, in profile order, whose argument conditions all
//!   hold;
//! - else the default action.
//!
//! Rules whose action is the default action are left out (libseccomp refuses
//! them), and names the x86_64 table lacks are skipped.
//!
//! The dispatch is a binary search over the call numbers (about nine
//! comparisons for containerd's default profile, where a chain would take
//! hundreds), because the guest kernel interprets the program: it has no
//! BPF JIT. Conditional jumps only ever skip one instruction; every longer
//! jump is a `ja`, whose offset has 32 bits, so no program outgrows the
//! 8-bit offsets of conditional jumps.

use crate::profile::{Action, ArgCondition, Operator, SeccompProfile};
use crate::{SeccompError, syscall_number};
use std::collections::BTreeMap;

/// The kernel's limit on a program's length (`BPF_MAXINSNS`).
pub const MAX_INSTRUCTIONS: usize = 4096;
/// `AUDIT_ARCH_X86_64`.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Calls at and above this number are the x32 ABI's.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const ERRNO_EPERM: u32 = 1;
const ERRNO_ENOSYS: u32 = 38;

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x54;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

// Offsets into `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;

// Return values (linux/seccomp.h).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// seccomp(2) filter flags.
const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;

/// One classic BPF instruction, laid out as `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A compiled profile: the program and the flags to install it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub program: Vec<Instruction>,
    pub flags: u32,
    /// Names the profile lists that x86_64 does not have.
    pub skipped_names: Vec<String>,
}

/// The return value of `action` (with its errno or trace message).
fn return_value(action: Action, errno: Option<u32>) -> Result<u32, SeccompError> {
    Ok(match action {
        Action::Kill | Action::KillThread => RET_KILL_THREAD,
        Action::KillProcess => RET_KILL_PROCESS,
        Action::Trap => RET_TRAP,
        Action::Errno => RET_ERRNO | (errno.unwrap_or(ERRNO_EPERM) & 0xffff),
        Action::Trace => RET_TRACE | (errno.unwrap_or(ERRNO_EPERM) & 0xffff),
        Action::Allow => RET_ALLOW,
        Action::Log => RET_LOG,
        Action::Notify => return Err(SeccompError::Notify),
    })
}

fn flags(names: &[String]) -> Result<u32, SeccompError> {
    names.iter().try_fold(0, |flags, name| {
        Ok(flags
            | match name.as_str() {
                "SECCOMP_FILTER_FLAG_TSYNC" => FLAG_TSYNC,
                "SECCOMP_FILTER_FLAG_LOG" => FLAG_LOG,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => FLAG_SPEC_ALLOW,
                other => return Err(SeccompError::Flag(other.to_owned())),
            })
    })
}

/// A rule with argument conditions: the conditions, and the return value
/// when they all hold.
type ConditionalRule = (Vec<ArgCondition>, u32);
/// A label and the rules placed there.
type Block<'a> = (usize, &'a [ConditionalRule]);

/// What one call number gets: an action outright, or rules to check.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Handler {
    Outright(u32),
    Rules(Vec<ConditionalRule>),
}

/// The handlers by call number, as the module docs decide them.
fn handlers(profile: &SeccompProfile, default: u32) -> Result<(BTreeMap<u32, Handler>, Vec<String>), SeccompError> {
    let mut by_number: BTreeMap<u32, Handler> = BTreeMap::new();
    let mut skipped = Vec::new();
    for rule in &profile.syscalls {
        let action = return_value(rule.action, rule.errno_ret)?;
        for condition in &rule.args {
            if condition.index > 5 {
                return Err(SeccompError::ArgIndex(condition.index));
            }
        }
        if rule.args.len() > 6 {
            return Err(SeccompError::TooManyConditions(rule.args.len()));
        }
        if action == default {
            continue;
        }
        for name in &rule.names {
            let Some(number) = syscall_number(name) else {
                if !skipped.contains(name) {
                    skipped.push(name.clone());
                }
                continue;
            };
            let handler = by_number.entry(number).or_insert_with(|| Handler::Rules(Vec::new()));
            match handler {
                Handler::Outright(_) => {}
                Handler::Rules(_) if rule.args.is_empty() => *handler = Handler::Outright(action),
                Handler::Rules(rules) => rules.push((rule.args.clone(), action)),
            }
        }
    }
    Ok((by_number, skipped))
}

/// The highest call number the profile names (whatever its rule).
pub(crate) fn newest_named(profile: &SeccompProfile) -> Option<u32> {
    profile
        .syscalls
        .iter()
        .flat_map(|rule| rule.names.iter())
        .filter_map(|name| syscall_number(name))
        .max()
}

/// Compiles `profile`; fails on what the guest cannot honour (a seccomp
/// agent, unknown flags) and on a program over the kernel's limit.
pub fn compile(profile: &SeccompProfile) -> Result<Filter, SeccompError> {
    let default = return_value(profile.default_action, profile.default_errno_ret)?;
    let flags = flags(&profile.flags)?;
    let (handlers, skipped_names) = handlers(profile, default)?;
    let mut code = Code::default();
    // Another architecture's calls have other numbers: none may pass.
    code.load(DATA_ARCH);
    code.skip_next_if(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64);
    code.ret(RET_KILL_PROCESS);
    code.load(DATA_NR);
    code.branch_unless(BPF_JMP_JGE_K, X32_SYSCALL_BIT);
    code.ret(default);
    if !matches!(profile.default_action, Action::Allow | Action::Log)
        && let Some(newest) = newest_named(profile)
    {
        code.branch_unless(BPF_JMP_JGT_K, newest);
        code.ret(RET_ERRNO | ERRNO_ENOSYS);
    }
    let entries: Vec<(u32, &Handler)> = handlers.iter().map(|(n, h)| (*n, h)).collect();
    let mut blocks = Vec::new();
    code.dispatch(&entries, default, &mut blocks);
    for (label, rules) in blocks {
        code.place(label);
        for (conditions, action) in rules {
            let next_rule = code.new_label();
            for condition in conditions {
                code.condition(condition, next_rule);
            }
            code.ret(*action);
            code.place(next_rule);
        }
        code.ret(default);
    }
    let program = code.resolve()?;
    Ok(Filter {
        program,
        flags,
        skipped_names,
    })
}

/// The high and the low 32 bits of a 64-bit argument value.
fn split(value: u64) -> (u32, u32) {
    let high = u32::try_from(value >> 32).expect("32 bits after the shift");
    let low = u32::try_from(value & 0xffff_ffff).expect("32 bits after the mask");
    (high, low)
}

/// Where a jump goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    Label(usize),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Load(u32),
    And(u32),
    Ret(u32),
    /// `ja` to a label.
    Jump(usize),
    /// A conditional jump comparing the accumulator with `k`.
    Branch {
        code: u16,
        k: u32,
        on_true: Target,
        on_false: Target,
    },
}

/// A program under construction, with labels resolved at the end.
#[derive(Debug, Default)]
struct Code {
    ops: Vec<Op>,
    /// Label number to the index of the op it stands before.
    labels: Vec<Option<usize>>,
}

impl Code {
    fn new_label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.ops.len());
    }

    fn load(&mut self, offset: u32) {
        self.ops.push(Op::Load(offset));
    }

    fn ret(&mut self, value: u32) {
        self.ops.push(Op::Ret(value));
    }

    /// Skips the next instruction when the comparison holds.
    fn skip_next_if(&mut self, code: u16, k: u32) {
        let after = self.new_label();
        self.ops.push(Op::Branch {
            code,
            k,
            on_true: Target::Label(after),
            on_false: Target::Next,
        });
        // The label sits after the next instruction; placed by the caller's
        // next push.
        self.pending_after(after);
    }

    /// Falls through to the next instruction when the comparison holds,
    /// and skips it otherwise.
    fn branch_unless(&mut self, code: u16, k: u32) {
        let after = self.new_label();
        self.ops.push(Op::Branch {
            code,
            k,
            on_true: Target::Next,
            on_false: Target::Label(after),
        });
        self.pending_after(after);
    }

    /// Places `label` one instruction from now: the caller pushes exactly
    /// one op next (a `ret` or a `ja`).
    fn pending_after(&mut self, label: usize) {
        self.labels[label] = Some(self.ops.len() + 1);
    }

    /// A binary search over `entries` (sorted by number): each call number
    /// reaches its action or its block of rules; any other number, the
    /// default.
    fn dispatch<'a>(&mut self, entries: &[(u32, &'a Handler)], default: u32, blocks: &mut Vec<Block<'a>>) {
        match entries {
            [] => self.ret(default),
            [(number, handler)] => {
                self.branch_unless(BPF_JMP_JEQ_K, *number);
                match handler {
                    Handler::Outright(action) => self.ret(*action),
                    Handler::Rules(rules) => {
                        let label = self.new_label();
                        self.ops.push(Op::Jump(label));
                        blocks.push((label, rules.as_slice()));
                    }
                }
                self.ret(default);
            }
            _ => {
                let middle = entries.len() / 2;
                let right = self.new_label();
                self.branch_unless(BPF_JMP_JGE_K, entries[middle].0);
                self.ops.push(Op::Jump(right));
                self.dispatch(&entries[..middle], default, blocks);
                self.place(right);
                self.dispatch(&entries[middle..], default, blocks);
            }
        }
    }

    /// Checks one 64-bit argument condition; jumps to `fail` unless it holds.
    fn condition(&mut self, condition: &ArgCondition, fail: usize) {
        let low = DATA_ARGS + 8 * condition.index;
        let high = low + 4;
        let (value_high, value_low) = split(condition.value);
        let pass = self.new_label();
        let (p, f, n) = (Target::Label(pass), Target::Label(fail), Target::Next);
        let branch = |code: &mut Self, op: u16, k: u32, on_true: Target, on_false: Target| {
            code.ops.push(Op::Branch {
                code: op,
                k,
                on_true,
                on_false,
            });
        };
        match condition.op {
            Operator::Equal => {
                self.load(high);
                branch(self, BPF_JMP_JEQ_K, value_high, n, f);
                self.load(low);
                branch(self, BPF_JMP_JEQ_K, value_low, n, f);
            }
            Operator::NotEqual => {
                self.load(high);
                branch(self, BPF_JMP_JEQ_K, value_high, n, p);
                self.load(low);
                branch(self, BPF_JMP_JEQ_K, value_low, f, p);
            }
            // Greater (or equal) when the high words say so, or when they
            // are equal and the low words say so.
            Operator::Greater | Operator::GreaterOrEqual | Operator::Less | Operator::LessOrEqual => {
                let (holds, fails) = match condition.op {
                    Operator::Greater | Operator::GreaterOrEqual => (p, f),
                    _ => (f, p),
                };
                let low_op = match condition.op {
                    Operator::Greater | Operator::LessOrEqual => BPF_JMP_JGT_K,
                    _ => BPF_JMP_JGE_K,
                };
                self.load(high);
                branch(self, BPF_JMP_JGT_K, value_high, holds, n);
                branch(self, BPF_JMP_JEQ_K, value_high, n, fails);
                self.load(low);
                branch(self, low_op, value_low, holds, fails);
            }
            Operator::MaskedEqual => {
                let (datum_high, datum_low) = split(condition.value_two);
                self.load(high);
                self.ops.push(Op::And(value_high));
                branch(self, BPF_JMP_JEQ_K, datum_high, n, f);
                self.load(low);
                self.ops.push(Op::And(value_low));
                branch(self, BPF_JMP_JEQ_K, datum_low, n, f);
            }
        }
        self.place(pass);
    }

    fn resolve(self) -> Result<Vec<Instruction>, SeccompError> {
        if self.ops.len() > MAX_INSTRUCTIONS {
            return Err(SeccompError::TooLong(self.ops.len()));
        }
        let position = |label: usize| self.labels[label].expect("every label is placed");
        let offset = |from: usize, target: Target| -> Result<u8, SeccompError> {
            let to = match target {
                Target::Next => return Ok(0),
                Target::Label(label) => position(label),
            };
            to.checked_sub(from + 1)
                .and_then(|d| u8::try_from(d).ok())
                .ok_or(SeccompError::Internal("a conditional jump goes backwards or too far"))
        };
        self.ops
            .iter()
            .enumerate()
            .map(|(at, op)| {
                Ok(match *op {
                    Op::Load(offset) => Instruction {
                        code: BPF_LD_W_ABS,
                        jt: 0,
                        jf: 0,
                        k: offset,
                    },
                    Op::And(k) => Instruction {
                        code: BPF_ALU_AND_K,
                        jt: 0,
                        jf: 0,
                        k,
                    },
                    Op::Ret(k) => Instruction {
                        code: BPF_RET_K,
                        jt: 0,
                        jf: 0,
                        k,
                    },
                    Op::Jump(label) => {
                        let distance = position(label)
                            .checked_sub(at + 1)
                            .ok_or(SeccompError::Internal("a jump goes backwards"))?;
                        Instruction {
                            code: BPF_JMP_JA,
                            jt: 0,
                            jf: 0,
                            k: u32::try_from(distance).map_err(|_| SeccompError::TooLong(self.ops.len()))?,
                        }
                    }
                    Op::Branch {
                        code,
                        k,
                        on_true,
                        on_false,
                    } => Instruction {
                        code,
                        jt: offset(at, on_true)?,
                        jf: offset(at, on_false)?,
                        k,
                    },
                })
            })
            .collect()
    }
}
