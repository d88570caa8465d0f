//! A tiny eBPF assembler: the few instructions the ipnet programs need, forward labels,
//! shared exit blocks, and a bpftool-like listing of the result (the golden files).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::programs::Helper;

/// One eBPF instruction, laid out exactly like the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src register in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn dst(&self) -> u8 {
        self.regs & 0x0f
    }
    fn src(&self) -> u8 {
        self.regs >> 4
    }
}

// Registers: r0 return value, r1-r5 helper arguments (clobbered by calls), r6-r9 kept
// across calls, r10 the read-only frame pointer.
pub(super) const R0: u8 = 0;
pub(super) const R1: u8 = 1;
pub(super) const R2: u8 = 2;
pub(super) const R3: u8 = 3;
pub(super) const R4: u8 = 4;
pub(super) const R5: u8 = 5;
pub(super) const R6: u8 = 6;
pub(super) const FP: u8 = 10;

/// Where a jump may go besides a label: one of the shared exit blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Exit {
    Allow,
    /// Return 0 after bpf_set_retval(-errno) so userspace sees `errno`
    /// instead of the default EPERM.
    Deny(i32),
    /// Return 0 (a cgroup skb program drops the packet).
    Drop,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Label(usize);

#[derive(Clone, Copy, Debug)]
pub(super) enum Target {
    Label(Label),
    Exit(Exit),
}

impl From<Label> for Target {
    fn from(l: Label) -> Self {
        Target::Label(l)
    }
}

impl From<Exit> for Target {
    fn from(e: Exit) -> Self {
        Target::Exit(e)
    }
}

#[derive(Default)]
pub(super) struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
    /// Exit blocks are emitted once, at the end, and only when used: the
    /// verifier rejects unreachable instructions.
    exits: BTreeMap<Exit, Label>,
}

// Opcodes (class | size/op | mode/source), as `bpftool` prints them.
const LDX_W_MEM: u8 = 0x61;
const LDX_DW_MEM: u8 = 0x79;
const STX_W_MEM: u8 = 0x63;
const ST_W_MEM: u8 = 0x62;
const ST_H_MEM: u8 = 0x6a;
const ST_DW_MEM: u8 = 0x7a;
const ALU64_ADD_K: u8 = 0x07;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const ALU_AND_K: u8 = 0x54;
const ALU_MOV_X: u8 = 0xbc;
const JMP_JA: u8 = 0x05;
const JMP_CALL: u8 = 0x85;
pub(super) const JMP_EXIT: u8 = 0x95;
const JMP32_JEQ_K: u8 = 0x16;
const JMP32_JNE_K: u8 = 0x56;

impl Asm {
    fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn { code, regs: (src << 4) | dst, off, imm });
    }

    pub(super) fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    pub(super) fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    fn label_for(&mut self, t: Target) -> Label {
        match t {
            Target::Label(l) => l,
            Target::Exit(e) => match self.exits.get(&e) {
                Some(&l) => l,
                None => {
                    let l = self.new_label();
                    self.exits.insert(e, l);
                    l
                }
            },
        }
    }

    fn jump(&mut self, code: u8, dst: u8, imm: i32, t: impl Into<Target>) {
        let l = self.label_for(t.into());
        self.fixups.push((self.insns.len(), l));
        self.emit(code, dst, 0, 0, imm);
    }

    pub(super) fn ja(&mut self, t: impl Into<Target>) {
        self.jump(JMP_JA, 0, 0, t);
    }
    pub(super) fn jeq32_imm(&mut self, dst: u8, imm: i32, t: impl Into<Target>) {
        self.jump(JMP32_JEQ_K, dst, imm, t);
    }
    pub(super) fn jne32_imm(&mut self, dst: u8, imm: i32, t: impl Into<Target>) {
        self.jump(JMP32_JNE_K, dst, imm, t);
    }
    pub(super) fn ldx_w(&mut self, dst: u8, src: u8, off: i16) {
        self.emit(LDX_W_MEM, dst, src, off, 0);
    }
    pub(super) fn ldx_dw(&mut self, dst: u8, src: u8, off: i16) {
        self.emit(LDX_DW_MEM, dst, src, off, 0);
    }
    pub(super) fn stx_w(&mut self, dst: u8, src: u8, off: i16) {
        self.emit(STX_W_MEM, dst, src, off, 0);
    }
    pub(super) fn st_w(&mut self, dst: u8, off: i16, imm: i32) {
        self.emit(ST_W_MEM, dst, 0, off, imm);
    }
    pub(super) fn st_h(&mut self, dst: u8, off: i16, imm: i32) {
        self.emit(ST_H_MEM, dst, 0, off, imm);
    }
    pub(super) fn st_dw(&mut self, dst: u8, off: i16, imm: i32) {
        self.emit(ST_DW_MEM, dst, 0, off, imm);
    }
    pub(super) fn mov64_imm(&mut self, dst: u8, imm: i32) {
        self.emit(ALU64_MOV_K, dst, 0, 0, imm);
    }
    pub(super) fn mov64_reg(&mut self, dst: u8, src: u8) {
        self.emit(ALU64_MOV_X, dst, src, 0, 0);
    }
    pub(super) fn mov32_reg(&mut self, dst: u8, src: u8) {
        self.emit(ALU_MOV_X, dst, src, 0, 0);
    }
    pub(super) fn add64_imm(&mut self, dst: u8, imm: i32) {
        self.emit(ALU64_ADD_K, dst, 0, 0, imm);
    }
    pub(super) fn and32_imm(&mut self, dst: u8, imm: i32) {
        self.emit(ALU_AND_K, dst, 0, 0, imm);
    }
    pub(super) fn call(&mut self, helper: Helper) {
        self.emit(JMP_CALL, 0, 0, 0, helper as i32);
    }
    fn ret(&mut self, value: i32) {
        self.mov64_imm(R0, value);
        self.emit(JMP_EXIT, 0, 0, 0, 0);
    }

    /// Emit the used exit blocks and resolve all jumps.
    pub(super) fn finish(mut self) -> Vec<Insn> {
        let exits = std::mem::take(&mut self.exits);
        for (exit, label) in exits {
            self.bind(label);
            match exit {
                Exit::Allow => self.ret(1),
                Exit::Deny(errno) => {
                    self.mov64_imm(R1, -errno);
                    self.call(Helper::SetRetval);
                    self.ret(0);
                }
                Exit::Drop => self.ret(0),
            }
        }
        for (at, label) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label.0].expect("jump to unbound label");
            let off = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(off).expect("jump out of range");
        }
        self.insns
    }
}

/// The program as text, one instruction a line, in the notation of `bpftool prog dump
/// xlated` (`w` for 32-bit operations, `pc+N` for jumps, helpers by name). Immediates
/// of 4096 and more are shown in hex: they are addresses and masks, whose bytes read
/// better than their value.
pub fn listing(insns: &[Insn]) -> String {
    let mut out = String::new();
    for (i, insn) in insns.iter().enumerate() {
        let (d, s, off) = (insn.dst(), insn.src(), insn.off);
        let imm = show_imm(insn.imm);
        let text = match insn.code {
            LDX_W_MEM => format!("r{d} = *(u32 *)(r{s} {off:+})"),
            LDX_DW_MEM => format!("r{d} = *(u64 *)(r{s} {off:+})"),
            STX_W_MEM => format!("*(u32 *)(r{d} {off:+}) = r{s}"),
            ST_W_MEM => format!("*(u32 *)(r{d} {off:+}) = {imm}"),
            ST_H_MEM => format!("*(u16 *)(r{d} {off:+}) = {imm}"),
            ST_DW_MEM => format!("*(u64 *)(r{d} {off:+}) = {imm}"),
            ALU64_ADD_K => format!("r{d} += {imm}"),
            ALU64_MOV_K => format!("r{d} = {imm}"),
            ALU64_MOV_X => format!("r{d} = r{s}"),
            ALU_AND_K => format!("w{d} &= {imm}"),
            ALU_MOV_X => format!("w{d} = w{s}"),
            JMP_JA => format!("goto pc{off:+}"),
            JMP_CALL => match Helper::from_id(insn.imm) {
                Some(h) => format!("call {}#{}", h.name(), insn.imm),
                None => format!("call #{}", insn.imm),
            },
            JMP_EXIT => "exit".to_string(),
            JMP32_JEQ_K => format!("if w{d} == {:#x} goto pc{off:+}", insn.imm),
            JMP32_JNE_K => format!("if w{d} != {:#x} goto pc{off:+}", insn.imm),
            code => format!("unknown opcode {code:#04x}"),
        };
        let _ = writeln!(out, "{i:4}: ({:02x}) {text}", insn.code);
    }
    out
}

fn show_imm(imm: i32) -> String {
    if imm.unsigned_abs() < 4096 {
        imm.to_string()
    } else {
        format!("{:#x}", imm)
    }
}
