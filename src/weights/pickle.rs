//! The part of Python's pickle format that `torch.save` writes for a state
//! dict: enough opcodes to rebuild dicts, tuples, numbers, strings and
//! tensors (as references to raw storages), and nothing that runs code.
//! Any other opcode or callable is an error that names it and its offset.
//! Reference: CPython's `Lib/pickletools.py`, which documents every opcode.

use std::collections::HashMap;

/// A value rebuilt from a pickle.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered (an OrderedDict or a dict).
    Dict(Vec<(Value, Value)>),
    /// `module.name`, before it is called.
    Global(String, String),
    /// A persistent reference to raw data: `('storage', type, key, location, numel)`.
    Storage {
        dtype: String,
        key: String,
        numel: usize,
    },
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
    Tensor {
        storage: Box<Value>,
        offset: usize,
        size: Vec<usize>,
        stride: Vec<usize>,
    },
}

/// A pickle this reader does not accept, and where.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("pickle byte {offset}: {message}")]
pub struct PickleError {
    pub offset: usize,
    pub message: String,
}

/// Limits that keep a hostile file from using unbounded memory.
const MAX_STACK: usize = 1 << 16;
const MAX_MEMO: usize = 1 << 20;

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn err(&self, message: impl Into<String>) -> PickleError {
        PickleError { offset: self.pos, message: message.into() }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        if self.data.len() - self.pos < n {
            return Err(self.err(format!("truncated: {n} bytes needed, {} left", self.data.len() - self.pos)));
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

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.err("unterminated text line"))?;
        let s = String::from_utf8(rest[..end].to_vec()).map_err(|_| self.err("text line is not UTF-8"))?;
        self.pos += end + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> Result<String, PickleError> {
        let bytes = self.take(n)?.to_vec();
        String::from_utf8(bytes).map_err(|_| self.err("string is not UTF-8"))
    }
}

fn as_usize(v: &Value) -> Option<usize> {
    match v {
        Value::Int(i) if *i >= 0 => Some(*i as usize),
        _ => None,
    }
}

fn as_usizes(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(as_usize).collect(),
        _ => None,
    }
}

/// Call a global: only the few constructors a state dict uses.
fn call(r: &Reader, f: Value, args: Value) -> Result<Value, PickleError> {
    let Value::Global(module, name) = &f else { return Err(r.err(format!("cannot call {f:?}"))) };
    let args = match args {
        Value::Tuple(a) => a,
        other => return Err(r.err(format!("arguments of {module}.{name} are not a tuple: {other:?}"))),
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") if args.is_empty() => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") if args.len() >= 4 => {
            let bad = || r.err(format!("{module}.{name}: unexpected arguments {args:?}"));
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

/// Rebuild the pickle that starts at `start` in `data` (files may hold
/// several one after another); returns it and where it ends.
pub fn load_at(data: &[u8], start: usize) -> Result<(Value, usize), PickleError> {
    let mut r = Reader { data, pos: start };
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    loop {
        if stack.len() > MAX_STACK || memo.len() > MAX_MEMO {
            return Err(r.err("pickle too deep or too large"));
        }
        let at = r.pos;
        let op = r.u8()?;
        let pop = |stack: &mut Vec<Value>, r: &Reader| {
            stack.pop().ok_or_else(|| r.err(format!("opcode 0x{op:02x} on an empty stack")))
        };
        let since_mark =
            |stack: &mut Vec<Value>, marks: &mut Vec<usize>, r: &Reader| -> Result<Vec<Value>, PickleError> {
                let m = marks.pop().ok_or_else(|| r.err("no MARK to close"))?;
                if m > stack.len() {
                    return Err(r.err("MARK beyond the stack"));
                }
                Ok(stack.split_off(m))
            };
        match op {
            0x80 => {
                r.u8()?; // PROTO n
            }
            0x95 => {
                r.take(8)?; // FRAME: a length hint
            }
            b'.' => return Ok((pop(&mut stack, &r)?, r.pos)), // STOP
            b'(' => marks.push(stack.len()),                  // MARK
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(r.u8()? as i64)),
            b'M' => stack.push(Value::Int(u16::from_le_bytes(r.take(2)?.try_into().expect("2")) as i64)),
            b'J' => stack.push(Value::Int(r.u32()? as i32 as i64)),
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
                stack.push(Value::Int(v));
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(r.take(8)?.try_into().expect("8")))),
            b'X' => {
                let n = r.u32()? as usize;
                let s = r.utf8(n)?;
                stack.push(Value::Str(s));
            }
            0x8c => {
                let n = r.u8()? as usize;
                let s = r.utf8(n)?;
                stack.push(Value::Str(s));
            }
            b'U' => {
                let n = r.u8()? as usize;
                let s = String::from_utf8_lossy(r.take(n)?).into_owned();
                stack.push(Value::Str(s));
            }
            b'T' => {
                let n = r.u32()? as usize;
                let s = String::from_utf8_lossy(r.take(n)?).into_owned();
                stack.push(Value::Str(s));
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                // STACK_GLOBAL
                let name = pop(&mut stack, &r)?;
                let module = pop(&mut stack, &r)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return Err(r.err("STACK_GLOBAL needs two strings")),
                }
            }
            b'q' => {
                let k = r.u8()? as u32;
                memo.insert(k, stack.last().cloned().ok_or_else(|| r.err("BINPUT on an empty stack"))?);
            }
            b'r' => {
                let k = r.u32()?;
                memo.insert(k, stack.last().cloned().ok_or_else(|| r.err("LONG_BINPUT on an empty stack"))?);
            }
            0x94 => {
                let k = memo.len() as u32;
                memo.insert(k, stack.last().cloned().ok_or_else(|| r.err("MEMOIZE on an empty stack"))?);
            }
            b'h' | b'j' => {
                let k = if op == b'h' { r.u8()? as u32 } else { r.u32()? };
                stack.push(memo.get(&k).cloned().ok_or_else(|| r.err(format!("memo {k} was never stored")))?);
            }
            b't' => {
                let items = since_mark(&mut stack, &mut marks, &r)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(r.err("TUPLEn on a short stack"));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'a' => {
                let v = pop(&mut stack, &r)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    _ => return Err(r.err("APPEND to a non-list")),
                }
            }
            b'e' => {
                let items = since_mark(&mut stack, &mut marks, &r)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return Err(r.err("APPENDS to a non-list")),
                }
            }
            b's' => {
                let v = pop(&mut stack, &r)?;
                let k = pop(&mut stack, &r)?;
                match stack.last_mut() {
                    Some(Value::Dict(d)) => d.push((k, v)),
                    _ => return Err(r.err("SETITEM on a non-dict")),
                }
            }
            b'u' => {
                let items = since_mark(&mut stack, &mut marks, &r)?;
                if items.len() % 2 != 0 {
                    return Err(r.err("SETITEMS with an odd number of items"));
                }
                let mut it = items.into_iter();
                let d = match stack.last_mut() {
                    Some(Value::Dict(d)) => d,
                    _ => return Err(r.err("SETITEMS on a non-dict")),
                };
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            b'R' => {
                let args = pop(&mut stack, &r)?;
                let f = pop(&mut stack, &r)?;
                let v = call(&r, f, args)?;
                stack.push(v);
            }
            b'b' => {
                // BUILD: set an object's state (a state dict's `_metadata`): ignored.
                pop(&mut stack, &r)?;
            }
            b'Q' => {
                let pid = pop(&mut stack, &r)?;
                let bad = || r.err(format!("unexpected persistent id {pid:?}"));
                let Value::Tuple(items) = &pid else { return Err(bad()) };
                match items.as_slice() {
                    [Value::Str(tag), Value::Global(_, dtype), Value::Str(key), _location, numel, ..]
                        if tag == "storage" =>
                    {
                        let numel = as_usize(numel).ok_or_else(bad)?;
                        stack.push(Value::Storage { dtype: dtype.clone(), key: key.clone(), numel });
                    }
                    _ => return Err(bad()),
                }
            }
            _ => return Err(PickleError { offset: at, message: format!("unsupported opcode 0x{op:02x}") }),
        }
    }
}
