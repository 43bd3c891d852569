//! A small pickle machine for the opcodes `torch.save` emits (protocol 2, the default, and the
//! protocol 4 additions for `pickle_protocol=4`).
//!
//! Written here because no well-kept crate fits: `serde-pickle` reads plain pickles but refuses
//! persistent ids (`BINPERSID`) and cannot keep a `GLOBAL` + `REDUCE` call as data, which is how
//! every tensor of a checkpoint is pickled; `candle-core` has a pickle reader, but inside a whole
//! tensor library we would not otherwise use. The machine evaluates nothing: a call of a global
//! (`REDUCE`, `NEWOBJ`) stays a [`Value::Call`], a persistent id a [`Value::Persistent`], and the
//! caller ([`crate::legacy`]) interprets the torch ones. The one call evaluated is
//! `collections.OrderedDict()`, which becomes a [`Value::Dict`] so that its items can be set.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;

/// A pickled value. Lists and dicts are shared (`Rc`), as pickle's memo shares them.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for `i64`: little-endian two's-complement bytes (`LONG1`, `LONG4`).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    /// A dict (or `OrderedDict`) in insertion order.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A reference to a module-level name (a class or function), `module.name`.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)`, not evaluated, with the state a `BUILD` gave it.
    Call(Rc<Call>),
    /// A persistent id, for the caller to resolve (torch's storages).
    Persistent(Rc<Value>),
}

/// A call kept as data: `callable(*args)`, then `BUILD` with `state`.
#[derive(Debug)]
pub struct Call {
    pub callable: Value,
    pub args: Value,
    pub state: RefCell<Option<Value>>,
}

impl Value {
    /// The integer, if this is one that fits `i64`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The text, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if this is a tuple or a list (copied out of a list).
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    /// A short description for messages (`str 'abc'`, `dict of 3`, `call of torch._utils._rebuild_tensor_v2`).
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => format!("bool {b}"),
            Value::Int(i) => format!("int {i}"),
            Value::BigInt(_) => "big int".into(),
            Value::Float(x) => format!("float {x}"),
            Value::Str(s) => format!("str {s:?}"),
            Value::Bytes(b) => format!("{} bytes", b.len()),
            Value::Tuple(t) => format!("tuple of {}", t.len()),
            Value::List(l) => format!("list of {}", l.borrow().len()),
            Value::Dict(d) => format!("dict of {}", d.borrow().len()),
            Value::Global { module, name } => format!("global {module}.{name}"),
            Value::Call(c) => format!("call of {}", c.callable.describe()),
            Value::Persistent(_) => "persistent id".into(),
        }
    }
}

/// What went wrong running a pickle: the byte offset and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pickle at byte {offset}: {message}")]
pub struct PickleError {
    /// Byte offset, from where the machine started reading, of the opcode at fault.
    pub offset: u64,
    pub message: String,
}

/// Bytes read, counted so that errors and callers know the position.
struct Counting<'a, R> {
    inner: &'a mut R,
    offset: u64,
}

impl<R: Read> Counting<'_, R> {
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        // Read in bounded steps: a corrupt length must not allocate gigabytes up front.
        let mut out = Vec::with_capacity(n.min(1 << 20));
        let got = (&mut *self.inner).take(n as u64).read_to_end(&mut out).map_err(|e| e.to_string())?;
        self.offset += got as u64;
        if got < n {
            return Err(format!("the stream ends inside an opcode's argument ({got} of {n} bytes)"));
        }
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        self.inner.read_exact(&mut a).map_err(|e| format!("the stream ends inside an opcode's argument ({e})"))?;
        self.offset += N as u64;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn line(&mut self) -> Result<String, String> {
        let mut out = Vec::new();
        loop {
            match self.u8()? {
                b'\n' => break,
                b => out.push(b),
            }
            if out.len() > 4096 {
                return Err("a text argument longer than 4096 bytes".into());
            }
        }
        String::from_utf8(out).map_err(|e| format!("a text argument is not UTF-8: {e}"))
    }
    fn utf8(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.bytes(n)?).map_err(|e| format!("a string is not UTF-8: {e}"))
    }
}

/// Little-endian two's-complement bytes as an integer (`LONG1`, `LONG4`).
fn long(bytes: Vec<u8>) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() > 8 {
        return Value::BigInt(bytes);
    }
    let fill = if bytes[bytes.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut full = [fill; 8];
    full[..bytes.len()].copy_from_slice(&bytes);
    Value::Int(i64::from_le_bytes(full))
}

/// Runs one pickle from `reader` up to and including its `STOP`, and returns the value it built;
/// `reader` is left just after the `STOP` (a legacy `torch.save` file holds several pickles in a
/// row, then raw bytes). Also returns the number of bytes read.
pub fn load<R: Read>(reader: &mut R) -> Result<(Value, u64), PickleError> {
    let mut input = Counting { inner: reader, offset: 0 };
    let mut machine = Machine::default();
    loop {
        let at = input.offset;
        let fail = |message: String| PickleError { offset: at, message };
        let op = input.u8().map_err(fail)?;
        match machine.step(op, &mut input) {
            Ok(Some(value)) => return Ok((value, input.offset)),
            Ok(None) => {}
            Err(message) => return Err(fail(format!("opcode 0x{op:02x}: {message}"))),
        }
    }
}

#[derive(Default)]
struct Machine {
    stack: Vec<Value>,
    /// Stack lengths at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine {
    fn pop(&mut self) -> Result<Value, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("pops past a MARK".into());
        }
        self.stack.pop().ok_or_else(|| "pops an empty stack".to_string())
    }

    fn top(&mut self) -> Result<&Value, String> {
        self.stack.last().ok_or_else(|| "needs a value on an empty stack".to_string())
    }

    /// The values pushed since the last `MARK`, which is closed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("needs a MARK and there is none")?;
        Ok(self.stack.split_off(mark))
    }

    fn get(&self, key: u32) -> Result<Value, String> {
        self.memo.get(&key).cloned().ok_or_else(|| format!("memo key {key} was never stored"))
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        if items.len() % 2 != 0 {
            return Err("SETITEMS with an odd number of values".into());
        }
        let Value::Dict(d) = self.top()? else {
            return Err(format!("sets items of a {}, not a dict", self.top()?.describe()));
        };
        let mut d = d.borrow_mut();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        match self.top()? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => Err(format!("appends to a {}, not a list", other.describe())),
        }
    }

    fn call(callable: Value, args: Value) -> Value {
        if let Value::Global { module, name } = &callable
            && module == "collections"
            && name == "OrderedDict"
            && args.items().is_some_and(|a| a.is_empty())
        {
            return Value::Dict(Rc::default());
        }
        Value::Call(Rc::new(Call { callable, args, state: RefCell::new(None) }))
    }

    /// Runs one opcode; `Some(value)` at `STOP`.
    fn step<R: Read>(&mut self, op: u8, input: &mut Counting<'_, R>) -> Result<Option<Value>, String> {
        let value = match op {
            // PROTO
            0x80 => {
                let proto = input.u8()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto} is newer than 5"));
                }
                return Ok(None);
            }
            // FRAME: an 8-byte length, framing only.
            0x95 => {
                input.array::<8>()?;
                return Ok(None);
            }
            b'.' => return self.pop().map(Some),
            b'(' => {
                self.marks.push(self.stack.len());
                return Ok(None);
            }
            b'0' => {
                self.pop()?;
                return Ok(None);
            }
            b'1' => {
                self.pop_mark()?;
                return Ok(None);
            }
            b'2' => self.top()?.clone(),
            b'}' => Value::Dict(Rc::default()),
            b']' => Value::List(Rc::default()),
            b')' => Value::Tuple(Rc::default()),
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'J' => Value::Int(i64::from(i32::from_le_bytes(input.array()?))),
            b'K' => Value::Int(i64::from(input.u8()?)),
            b'M' => Value::Int(i64::from(u16::from_le_bytes(input.array()?))),
            0x8a => {
                let n = input.u8()?;
                long(input.bytes(usize::from(n))?)
            }
            0x8b => {
                let n = input.u32()?;
                long(input.bytes(n as usize)?)
            }
            b'G' => Value::Float(f64::from_be_bytes(input.array()?)),
            b'X' => {
                let n = input.u32()?;
                Value::Str(input.utf8(n as usize)?)
            }
            0x8c => {
                let n = input.u8()?;
                Value::Str(input.utf8(usize::from(n))?)
            }
            0x8d => {
                let n = u64::from_le_bytes(input.array()?);
                Value::Str(input.utf8(usize::try_from(n).map_err(|e| e.to_string())?)?)
            }
            // SHORT_BINSTRING / BINSTRING (Python 2 str): kept as text where it is UTF-8.
            b'U' | b'T' => {
                let n = if op == b'U' { u32::from(input.u8()?) } else { input.u32()? };
                let bytes = input.bytes(n as usize)?;
                match String::from_utf8(bytes) {
                    Ok(s) => Value::Str(s),
                    Err(e) => Value::Bytes(e.into_bytes()),
                }
            }
            b'C' => {
                let n = input.u8()?;
                Value::Bytes(input.bytes(usize::from(n))?)
            }
            b'B' => {
                let n = input.u32()?;
                Value::Bytes(input.bytes(n as usize)?)
            }
            b't' => Value::Tuple(Rc::new(self.pop_mark()?)),
            0x85 => {
                let a = self.pop()?;
                Value::Tuple(Rc::new(vec![a]))
            }
            0x86 => {
                let b = self.pop()?;
                let a = self.pop()?;
                Value::Tuple(Rc::new(vec![a, b]))
            }
            0x87 => {
                let c = self.pop()?;
                let b = self.pop()?;
                let a = self.pop()?;
                Value::Tuple(Rc::new(vec![a, b, c]))
            }
            b'l' => Value::List(Rc::new(RefCell::new(self.pop_mark()?))),
            b'd' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Dict(Rc::default()));
                self.set_items(items)?;
                return Ok(None);
            }
            b'c' => {
                let module = input.line()?;
                let name = input.line()?;
                Value::Global { module, name }
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => Value::Global { module, name },
                    (m, n) => return Err(format!("STACK_GLOBAL of {} and {}", m.describe(), n.describe())),
                }
            }
            // REDUCE and NEWOBJ: callable(*args), kept as data.
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                Self::call(callable, args)
            }
            b'b' => {
                let state = self.pop()?;
                match self.top()? {
                    Value::Call(c) => *c.state.borrow_mut() = Some(state),
                    // An OrderedDict's attributes (`_metadata` of a state dict): not items.
                    Value::Dict(_) => {}
                    other => return Err(format!("BUILD on a {}", other.describe())),
                }
                return Ok(None);
            }
            b'Q' => {
                let pid = self.pop()?;
                Value::Persistent(Rc::new(pid))
            }
            b'q' => {
                let key = u32::from(input.u8()?);
                let v = self.top()?.clone();
                self.memo.insert(key, v);
                return Ok(None);
            }
            b'r' => {
                let key = input.u32()?;
                let v = self.top()?.clone();
                self.memo.insert(key, v);
                return Ok(None);
            }
            0x94 => {
                let key = self.memo.len() as u32;
                let v = self.top()?.clone();
                self.memo.insert(key, v);
                return Ok(None);
            }
            b'h' => self.get(u32::from(input.u8()?))?,
            b'j' => {
                let key = input.u32()?;
                self.get(key)?
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?;
                return Ok(None);
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
                return Ok(None);
            }
            b'a' => {
                let v = self.pop()?;
                self.append(vec![v])?;
                return Ok(None);
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)?;
                return Ok(None);
            }
            other => return Err(format!("unsupported opcode {:?}", char::from(other))),
        };
        self.stack.push(value);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Value, PickleError> {
        load(&mut &bytes[..]).map(|(v, _)| v)
    }

    #[test]
    fn python_protocol_2_values_load() {
        // pickle.dumps({'a': [1, -2, 300, 70000, 2**40, 1.5, None, True], 'b': ('x', 'yz')}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00\x8a\x06\x00\x00\x00\x00\x00\x01G?\xf8\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bq\x03X\x01\x00\x00\x00xq\x04X\x02\x00\x00\x00yzq\x05\x86q\x06u.";
        let Value::Dict(d) = run(bytes).unwrap() else { panic!() };
        let d = d.borrow();
        assert_eq!(d[0].0.as_str(), Some("a"));
        let items = d[0].1.items().unwrap();
        let ints: Vec<Option<i64>> = items[..5].iter().map(Value::as_int).collect();
        assert_eq!(ints, vec![Some(1), Some(-2), Some(300), Some(70000), Some(1 << 40)]);
        assert!(matches!(items[5], Value::Float(x) if x == 1.5));
        assert!(matches!(items[6], Value::None) && matches!(items[7], Value::Bool(true)));
        let b = d[1].1.items().unwrap();
        assert_eq!((b[0].as_str(), b[1].as_str()), (Some("x"), Some("yz")));
    }

    #[test]
    fn memo_shares_containers_and_globals_stay_calls() {
        // l = []; pickle.dumps((l, l.append(1) or l, collections.OrderedDict()), 2) by hand:
        // the second element is a BINGET of the first list, appended to afterwards.
        let bytes = b"\x80\x02]q\x00h\x00K\x07accollections\nOrderedDict\nq\x01)Rq\x02\x87q\x03.";
        let Value::Tuple(t) = run(bytes).unwrap() else { panic!() };
        let (Value::List(a), Value::List(b)) = (&t[0], &t[1]) else { panic!() };
        assert!(Rc::ptr_eq(a, b) && a.borrow()[0].as_int() == Some(7));
        assert!(matches!(&t[2], Value::Dict(d) if d.borrow().is_empty()));
        let call = run(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nK\x01\x85R.").unwrap();
        let Value::Call(c) = call else { panic!() };
        assert!(
            matches!(&c.callable, Value::Global { module, name } if module == "torch._utils" && name == "_rebuild_tensor_v2")
        );
    }

    #[test]
    fn damaged_pickles_are_refused_with_the_offset() {
        let e = run(b"\x80\x02K").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("ends inside"), "{e}");
        let e = run(b"\x80\x02h\x05.").unwrap_err();
        assert!(e.message.contains("memo key 5"), "{e}");
        let e = run(b"\x80\x02K\x01s.").unwrap_err();
        assert!(e.message.contains("pops an empty stack"), "{e}");
        let e = run(b"\x80\x02\xff").unwrap_err();
        assert!(e.message.contains("unsupported opcode"), "{e}");
        let e = run(b"\x80\x02X\xff\xff\xff\x7fab").unwrap_err();
        assert!(e.message.contains("ends inside"), "{e}");
    }
}
