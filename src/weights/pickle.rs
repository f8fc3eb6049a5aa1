//! The part of Python's pickle format that `torch.save` writes for a state
//! dict: enough opcodes to rebuild dicts, tuples, numbers, strings and
//! tensors (as references to raw storages), and nothing that runs code.
//! Any other opcode or callable is an error that names it and its offset.
//! Reference: CPython's `Lib/pickletools.py`, which documents every opcode.
//!
//! A pickle is a program, so a hostile one can ask for far more than its
//! size suggests. Three limits keep it bounded:
//! - memo entries are shared (`Rc`), never deep-copied, so a memo lookup costs
//!   O(1) however large the value, and memory grows with the opcodes run;
//! - every value, stack slot, mark and memo entry counts against
//!   [`MAX_NODES`] (a real state dict needs a few per tensor);
//! - nesting is tracked beside each value (not by walking it) and refused
//!   past [`MAX_DEPTH`], so dropping, printing or comparing a value recurses
//!   at most that deep, far inside any thread's stack.

use std::collections::HashMap;
use std::rc::Rc;

/// A value rebuilt from a pickle. Containers and strings are shared, so a
/// clone is cheap whatever the size.
/// No `PartialEq`: comparing two values that share parts could take
/// exponential time; match on them instead.
#[derive(Clone)]
pub enum Value {
    /// Python's `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int` that fits in 64 bits.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(Rc<str>),
    /// A `tuple`.
    Tuple(Rc<Vec<Value>>),
    /// A `list`.
    List(Rc<Vec<Value>>),
    /// Insertion-ordered (an OrderedDict or a dict).
    Dict(Rc<Vec<(Value, Value)>>),
    /// `module.name`, before it is called.
    Global(Rc<str>, Rc<str>),
    /// A persistent reference to raw data: `('storage', type, key, location, numel)`.
    Storage {
        /// The storage type's name (`FloatStorage`).
        dtype: Rc<str>,
        /// The storage's key: its file name in the archive.
        key: Rc<str>,
        /// Elements it holds.
        numel: usize,
    },
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
    Tensor {
        /// The [`Value::Storage`] holding the data.
        storage: Box<Value>,
        /// First element, in the storage.
        offset: usize,
        /// Shape.
        size: Rc<[usize]>,
        /// Elements between neighbours along each axis.
        stride: Rc<[usize]>,
    },
}

/// Values in error messages are shown up to this many characters: a value
/// may share its parts many times over, so its full text can be huge.
const SHOWN_CHARS: usize = 200;

impl Value {
    /// A short text of the value, cut at about 200 characters (`SHOWN_CHARS`).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        self.write_short(&mut out);
        if out.len() > SHOWN_CHARS {
            let cut = (0..=SHOWN_CHARS).rev().find(|&i| out.is_char_boundary(i)).unwrap_or(0);
            out.truncate(cut);
            out.push_str("...");
        }
        out
    }

    /// Appends to `out` until it is past the length that will be shown;
    /// recursion is bounded by [`MAX_DEPTH`].
    fn write_short(&self, out: &mut String) {
        if out.len() > SHOWN_CHARS {
            return;
        }
        let short = |s: &str| s.chars().take(SHOWN_CHARS).collect::<String>();
        let items = |out: &mut String, open: &str, vs: &[Value], close: &str| {
            out.push_str(open);
            for (i, v) in vs.iter().enumerate() {
                if out.len() > SHOWN_CHARS {
                    break;
                }
                if i > 0 {
                    out.push_str(", ");
                }
                v.write_short(out);
            }
            out.push_str(close);
        };
        match self {
            Value::None => out.push_str("None"),
            Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&f.to_string()),
            Value::Str(s) => out.push_str(&format!("{:?}", short(s))),
            Value::Tuple(vs) => items(out, "(", vs, ")"),
            Value::List(vs) => items(out, "[", vs, "]"),
            Value::Dict(kvs) => {
                out.push('{');
                for (i, (k, v)) in kvs.iter().enumerate() {
                    if out.len() > SHOWN_CHARS {
                        break;
                    }
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.write_short(out);
                    out.push_str(": ");
                    v.write_short(out);
                }
                out.push('}');
            }
            Value::Global(m, n) => out.push_str(&format!("{}.{}", short(m), short(n))),
            Value::Storage { dtype, key, numel } => {
                out.push_str(&format!("storage({}, {:?}, {numel})", short(dtype), short(key)))
            }
            Value::Tensor { offset, size, .. } => {
                out.push_str(&format!("tensor(size {:?}, offset {offset})", &size[..size.len().min(8)]))
            }
        }
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A pickle this reader does not accept, and where.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("pickle byte {offset}: {message}")]
pub struct PickleError {
    /// Byte offset in the pickle.
    pub offset: usize,
    /// What is wrong there.
    pub message: String,
}

impl From<PickleError> for crate::error::Error {
    fn from(e: PickleError) -> crate::error::Error {
        crate::error::Error::Other(Box::new(e))
    }
}

/// Values, stack slots, marks and memo entries one pickle may create (about
/// 64 bytes each). An AlexNet state dict needs a few hundred, ResNet-152's a
/// few tens of thousands.
pub const MAX_NODES: usize = 1 << 20;
/// How deeply values may nest. A state dict nests about 4 deep (dict,
/// tensor arguments, persistent id); `_metadata` one level more.
pub const MAX_DEPTH: u32 = 32;
/// The most dimensions a tensor may have (PyTorch's own limit is 64).
pub const MAX_RANK: usize = 64;

/// A value on the stack or in the memo, with how deeply it nests (a scalar
/// is 0, a tuple of scalars 1), so depth is checked in O(1) per opcode.
#[derive(Clone)]
struct Item {
    value: Value,
    depth: u32,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn err(&self, message: impl Into<String>) -> PickleError {
        PickleError { offset: self.pos, message: message.into() }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let left = self.data.len().saturating_sub(self.pos);
        if left < n {
            return Err(self.err(format!("truncated: {n} bytes needed, {left} left")));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn line(&mut self) -> Result<Rc<str>, PickleError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.err("unterminated text line"))?;
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| self.err("text line is not UTF-8"))?;
        let s = Rc::from(s);
        self.pos += end + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> Result<Rc<str>, PickleError> {
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Rc::from(s)),
            Err(_) => Err(self.err("string is not UTF-8")),
        }
    }
}

fn as_usize(v: &Value) -> Option<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

fn as_usizes(v: &Value) -> Option<Rc<[usize]>> {
    match v {
        Value::Tuple(items) | Value::List(items) if items.len() <= MAX_RANK => {
            items.iter().map(as_usize).collect::<Option<Vec<usize>>>().map(Rc::from)
        }
        _ => None,
    }
}

/// Call a global: only the few constructors a state dict uses.
fn call(r: &Reader, f: Value, args: Value) -> Result<Value, PickleError> {
    let Value::Global(module, name) = &f else { return Err(r.err(format!("cannot call {f:?}"))) };
    let Value::Tuple(args) = args else {
        return Err(r.err(format!("arguments of {module}.{name} are not a tuple: {args:?}")));
    };
    match (&**module, &**name) {
        ("collections", "OrderedDict") if args.is_empty() => Ok(Value::Dict(Rc::default())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") if args.len() >= 4 => {
            let bad = || r.err(format!("{module}.{name}: unexpected arguments {:?}", Value::Tuple(args.clone())));
            if !matches!(args[0], Value::Storage { .. }) {
                return Err(bad());
            }
            let offset = as_usize(&args[1]).ok_or_else(bad)?;
            let size = as_usizes(&args[2]).ok_or_else(bad)?;
            let stride = as_usizes(&args[3]).ok_or_else(bad)?;
            Ok(Value::Tensor { storage: Box::new(args[0].clone()), offset, size, stride })
        }
        ("torch._utils", "_rebuild_parameter") if !args.is_empty() => Ok(args[0].clone()),
        _ => Err(r.err(format!("refusing to call {module}.{name} (only state-dict constructors are allowed)"))),
    }
}

/// Rebuild the object in `data`.
pub fn load(data: &[u8]) -> Result<Value, PickleError> {
    load_at(data, 0).map(|(v, _)| v)
}

/// The machine's state: the stack, the marks into it, the memo, and what has
/// been spent of [`MAX_NODES`].
struct Machine {
    stack: Vec<Item>,
    marks: Vec<usize>,
    memo: HashMap<u32, Item>,
    nodes: usize,
}

impl Machine {
    /// Count `n` more nodes against the budget.
    fn spend(&mut self, r: &Reader, n: usize) -> Result<(), PickleError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(r.err(format!("the pickle builds more than {MAX_NODES} values")));
        }
        Ok(())
    }

    fn push(&mut self, r: &Reader, value: Value, depth: u32) -> Result<(), PickleError> {
        if depth > MAX_DEPTH {
            return Err(r.err(format!("values nest more than {MAX_DEPTH} deep")));
        }
        self.spend(r, 1)?;
        self.stack.push(Item { value, depth });
        Ok(())
    }

    fn scalar(&mut self, r: &Reader, value: Value) -> Result<(), PickleError> {
        self.push(r, value, 0)
    }

    fn pop(&mut self, r: &Reader, op: u8) -> Result<Item, PickleError> {
        self.stack.pop().ok_or_else(|| r.err(format!("opcode 0x{op:02x} on an empty stack")))
    }

    fn since_mark(&mut self, r: &Reader) -> Result<Vec<Item>, PickleError> {
        let m = self.marks.pop().ok_or_else(|| r.err("no MARK to close"))?;
        if m > self.stack.len() {
            return Err(r.err("MARK beyond the stack"));
        }
        Ok(self.stack.split_off(m))
    }

    /// Push a container of `items`, one level deeper than the deepest.
    fn push_tuple(&mut self, r: &Reader, items: Vec<Item>) -> Result<(), PickleError> {
        let depth = items.iter().map(|i| i.depth).max().unwrap_or(0) + 1;
        self.push(r, Value::Tuple(Rc::new(items.into_iter().map(|i| i.value).collect())), depth)
    }

    fn memo_put(&mut self, r: &Reader, key: u32) -> Result<(), PickleError> {
        let top = self.stack.last().cloned().ok_or_else(|| r.err("memo store on an empty stack"))?;
        self.spend(r, 1)?;
        self.memo.insert(key, top);
        Ok(())
    }

    /// The list or dict on top of the stack, to add `added` (at most
    /// `depth` deep) to; copied first only if the memo shares it.
    fn top_container(&mut self, r: &Reader, what: &str, depth: u32) -> Result<&mut Value, PickleError> {
        let new_depth = depth + 1;
        if new_depth > MAX_DEPTH {
            return Err(r.err(format!("values nest more than {MAX_DEPTH} deep")));
        }
        let shared_len = match self.stack.last() {
            Some(Item { value: Value::List(l), .. }) if Rc::strong_count(l) > 1 => l.len(),
            Some(Item { value: Value::Dict(d), .. }) if Rc::strong_count(d) > 1 => 2 * d.len(),
            Some(Item { value: Value::List(_) | Value::Dict(_), .. }) => 0,
            _ => return Err(r.err(format!("{what} on something that is not a list or dict"))),
        };
        // Copy-on-write copies the container's slots (not their contents).
        self.spend(r, shared_len)?;
        let top = self.stack.last_mut().expect("checked above");
        top.depth = top.depth.max(new_depth);
        Ok(&mut top.value)
    }
}

/// Rebuild the pickle that starts at `start` in `data` (files may hold
/// several one after another); returns it and where it ends.
pub fn load_at(data: &[u8], start: usize) -> Result<(Value, usize), PickleError> {
    let mut r = Reader { data, pos: start };
    if start > data.len() {
        return Err(r.err("starts past the end of the file"));
    }
    let mut m = Machine { stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), nodes: 0 };
    loop {
        let at = r.pos;
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO n
            }
            0x95 => {
                r.take(8)?; // FRAME: a length hint
            }
            b'.' => return Ok((m.pop(&r, op)?.value, r.pos)), // STOP
            b'(' => {
                // MARK
                m.spend(&r, 1)?;
                m.marks.push(m.stack.len());
            }
            b'}' => m.push(&r, Value::Dict(Rc::default()), 1)?,
            b']' => m.push(&r, Value::List(Rc::default()), 1)?,
            b')' => m.push(&r, Value::Tuple(Rc::default()), 1)?,
            b'N' => m.scalar(&r, Value::None)?,
            0x88 => m.scalar(&r, Value::Bool(true))?,
            0x89 => m.scalar(&r, Value::Bool(false))?,
            b'K' => {
                let v = r.u8()?;
                m.scalar(&r, Value::Int(v as i64))?
            }
            b'M' => {
                let v = u16::from_le_bytes(r.take(2)?.try_into().expect("2"));
                m.scalar(&r, Value::Int(v as i64))?
            }
            b'J' => {
                let v = r.u32()? as i32;
                m.scalar(&r, Value::Int(v as i64))?
            }
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let n = r.u8()? as usize;
                if n > 8 {
                    return Err(r.err(format!("LONG1 of {n} bytes does not fit 64 bits")));
                }
                let bytes = r.take(n)?;
                let mut v: i64 = 0;
                for (i, &b) in bytes.iter().enumerate() {
                    v |= (b as i64) << (8 * i);
                }
                if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                m.scalar(&r, Value::Int(v))?;
            }
            b'G' => {
                let v = f64::from_be_bytes(r.take(8)?.try_into().expect("8"));
                m.scalar(&r, Value::Float(v))?
            }
            b'X' | 0x8c => {
                let n = if op == b'X' { r.u32()? as usize } else { r.u8()? as usize };
                let s = r.utf8(n)?;
                m.scalar(&r, Value::Str(s))?;
            }
            b'U' | b'T' => {
                // SHORT_BINSTRING, BINSTRING: Python 2 byte strings.
                let n = if op == b'U' { r.u8()? as usize } else { r.u32()? as usize };
                let s = Rc::from(String::from_utf8_lossy(r.take(n)?));
                m.scalar(&r, Value::Str(s))?;
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                m.scalar(&r, Value::Global(module, name))?;
            }
            0x93 => {
                // STACK_GLOBAL
                let name = m.pop(&r, op)?.value;
                let module = m.pop(&r, op)?.value;
                match (module, name) {
                    (Value::Str(a), Value::Str(b)) => m.scalar(&r, Value::Global(a, b))?,
                    _ => return Err(r.err("STACK_GLOBAL needs two strings")),
                }
            }
            b'q' => {
                let k = r.u8()? as u32;
                m.memo_put(&r, k)?;
            }
            b'r' => {
                let k = r.u32()?;
                m.memo_put(&r, k)?;
            }
            0x94 => {
                let k = u32::try_from(m.memo.len()).map_err(|_| r.err("memo full"))?;
                m.memo_put(&r, k)?;
            }
            b'h' | b'j' => {
                let k = if op == b'h' { r.u8()? as u32 } else { r.u32()? };
                // Shared, not copied: O(1) however large the value.
                let item = m.memo.get(&k).cloned().ok_or_else(|| r.err(format!("memo {k} was never stored")))?;
                m.push(&r, item.value, item.depth)?;
            }
            b't' => {
                let items = m.since_mark(&r)?;
                m.push_tuple(&r, items)?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if m.stack.len() < n {
                    return Err(r.err("TUPLEn on a short stack"));
                }
                let items = m.stack.split_off(m.stack.len() - n);
                m.push_tuple(&r, items)?;
            }
            b'a' | b'e' => {
                // APPEND one value, APPENDS all since the mark.
                let items = if op == b'a' { vec![m.pop(&r, op)?] } else { m.since_mark(&r)? };
                let depth = items.iter().map(|i| i.depth).max().unwrap_or(0);
                match m.top_container(&r, "APPEND", depth)? {
                    Value::List(l) => Rc::make_mut(l).extend(items.into_iter().map(|i| i.value)),
                    _ => return Err(r.err("APPEND to a non-list")),
                }
            }
            b's' | b'u' => {
                // SETITEM one pair, SETITEMS all pairs since the mark.
                let items = if op == b's' {
                    let v = m.pop(&r, op)?;
                    let k = m.pop(&r, op)?;
                    vec![k, v]
                } else {
                    m.since_mark(&r)?
                };
                if items.len() % 2 != 0 {
                    return Err(r.err("SETITEMS with an odd number of items"));
                }
                let depth = items.iter().map(|i| i.depth).max().unwrap_or(0);
                let Value::Dict(d) = m.top_container(&r, "SETITEM", depth)? else {
                    return Err(r.err("SETITEM on a non-dict"));
                };
                let d = Rc::make_mut(d);
                let mut it = items.into_iter().map(|i| i.value);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            b'R' => {
                let args = m.pop(&r, op)?;
                let f = m.pop(&r, op)?;
                let v = call(&r, f.value, args.value)?;
                // A tensor keeps its sizes flat; a parameter is at most as
                // deep as its arguments.
                let depth = if matches!(v, Value::Tensor { .. } | Value::Dict(_)) { 1 } else { args.depth };
                m.push(&r, v, depth)?;
            }
            b'b' => {
                // BUILD: set an object's state (a state dict's `_metadata`): ignored.
                m.pop(&r, op)?;
            }
            b'Q' => {
                let pid = m.pop(&r, op)?.value;
                let bad = || r.err(format!("unexpected persistent id {pid:?}"));
                let Value::Tuple(items) = &pid else { return Err(bad()) };
                match items.as_slice() {
                    [Value::Str(tag), Value::Global(_, dtype), Value::Str(key), _location, numel, ..]
                        if &**tag == "storage" =>
                    {
                        let numel = as_usize(numel).ok_or_else(bad)?;
                        let storage = Value::Storage { dtype: dtype.clone(), key: key.clone(), numel };
                        m.scalar(&r, storage)?;
                    }
                    _ => return Err(bad()),
                }
            }
            _ => return Err(PickleError { offset: at, message: format!("unsupported opcode 0x{op:02x}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `f` on a thread with the 2 MiB stack of a pool thread.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().expect("no stack overflow")
    }

    #[test]
    fn memo_lookups_share_instead_of_copying() {
        // A tuple of 1000 ints in memo 0, then a list of 100 000 lookups of
        // it: copied, that is 10^8 values (3 GB); shared, 100 000.
        let mut p = b"\x80\x02(".to_vec();
        p.extend(std::iter::repeat_n(*b"K\x07", 1000).flatten());
        p.extend_from_slice(b"tq\x00](");
        p.extend(std::iter::repeat_n(*b"h\x00", 100_000).flatten());
        p.extend_from_slice(b"e.");
        let Value::List(items) = load(&p).unwrap() else { panic!("not a list") };
        assert_eq!(items.len(), 100_000);
        let (Value::Tuple(first), Value::Tuple(last)) = (&items[0], &items[99_999]) else { panic!("not tuples") };
        assert!(Rc::ptr_eq(first, last) && first.len() == 1000);
    }

    #[test]
    fn a_doubling_memo_bomb_is_refused_quickly() {
        // t = (t, t), 200 times: 2^200 values if expanded.
        let mut p = b"\x80\x02)q\x00".to_vec();
        p.extend(std::iter::repeat_n(*b"h\x00h\x00\x86q\x00", 200).flatten());
        p.push(b'.');
        let err = load(&p).unwrap_err();
        assert!(err.message.contains("nest more than 32 deep"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_on_a_small_stack() {
        let repeat = |head: &[u8], body: &[u8], n: usize, tail: &[u8]| {
            let mut p = head.to_vec();
            p.extend(std::iter::repeat_n(body, n).flatten());
            p.extend_from_slice(tail);
            p
        };
        // 1M nested tuples (2 MB), nested lists, dicts nested through their keys.
        let tuples = repeat(b"\x80\x02)", b"\x85", 1_000_000, b".");
        let lists = repeat(b"\x80\x02", b"]", 100_000, &[b'a'; 99_999]);
        let keys = repeat(b"\x80\x02)q\x00", b"}h\x00Nsq\x00", 100_000, b".");
        for (what, p) in [("tuples", tuples), ("lists", lists), ("keys", keys)] {
            let err = on_small_stack(move || load(&p).map(drop).unwrap_err());
            assert!(err.message.contains("nest more than"), "{what}: {err}");
        }
        // Within the limit, a nested value is read, and dropped, on that stack.
        let ok = repeat(b"\x80\x02)", b"\x85", MAX_DEPTH as usize - 1, b".");
        assert!(on_small_stack(move || load(&ok).is_ok()));
    }

    #[test]
    fn values_marks_and_copies_count_against_the_budget() {
        let many = |body: &[u8], n: usize| {
            let mut p = b"\x80\x02".to_vec();
            p.extend(std::iter::repeat_n(body, n).flatten());
            p
        };
        // Values on the stack, marks, memo entries: each 2^20 + 1.
        for body in [b"N".as_slice(), b"(", b"Nq\x00"] {
            let err = load(&many(body, MAX_NODES + 1)).unwrap_err();
            assert!(err.message.contains("builds more than"), "{err}");
        }
        // A memoized list appended to after each store is copied each time:
        // n copies of a list growing to n, n^2 / 2 slots.
        let mut p = b"\x80\x02]".to_vec();
        p.extend(std::iter::repeat_n(*b"q\x00Na", 5000).flatten());
        let err = load(&p).unwrap_err();
        assert!(err.message.contains("builds more than"), "{err}");
    }

    #[test]
    fn errors_show_a_short_text_of_a_huge_value() {
        // A shared 2^30-value tuple called with another as its arguments.
        let mut p = b"\x80\x02)q\x00".to_vec();
        p.extend(std::iter::repeat_n(*b"h\x00h\x00\x86q\x00", 30).flatten());
        p.extend_from_slice(b"R.");
        let err = load(&p).unwrap_err();
        assert!(err.message.starts_with("cannot call ((((") && err.message.len() < 3 * SHOWN_CHARS, "{err}");
        let shared = {
            let mut v = Value::Tuple(Rc::default());
            for _ in 0..30 {
                v = Value::Tuple(Rc::new(vec![v.clone(), v]));
            }
            v
        };
        assert!(shared.describe().len() <= SHOWN_CHARS + 3);
        // Start past the end, cut anywhere: errors, never panics.
        assert!(load_at(b".", 5).is_err());
        for cut in 0..p.len() {
            let _ = load(&p[..cut]);
        }
    }
}
