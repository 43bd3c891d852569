//! Legacy `torch.save` files (PyTorch before 1.6, or `_use_new_zipfile_serialization=False`),
//! read without Python or libtorch (whose C++ reader opens only the zip format).
//!
//! The layout (`torch/serialization.py`, `_legacy_save`): five items in a row:
//! 1. a pickled magic number, `0x1950a86a20f9469cfc6c`;
//! 2. a pickled protocol version (1001);
//! 3. a pickled dict of system information (`little_endian`, `type_sizes`);
//! 4. the pickled object: a state dict (an `OrderedDict` of name to tensor), possibly inside a
//!    dict such as `{'state_dict': ...}` or `{'model': ...}`. Each tensor is a call of
//!    `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
//!    backward_hooks)`, its storage a persistent id `('storage', storage_type, key, location,
//!    numel[, view_metadata])` where `storage_type` is a global such as `torch.FloatStorage`;
//! 5. a pickled list of storage keys, then for each key in that order an 8-byte little-endian
//!    element count and the storage's raw bytes (little-endian).
//!
//! Tensors are views: a storage offset and strides (a transposed weight, a slice, two tensors
//! sharing one storage). [`read_legacy`] materialises each as a contiguous row-major [`RawTensor`].

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read};
use std::path::Path;

use crate::pickle::{self, Value};
use crate::{Dtype, WeightFileError};

/// The magic number a legacy file starts with, as `LONG1`'s little-endian bytes.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The only protocol version `torch.save` has written.
const PROTOCOL_VERSION: i64 = 1001;
/// Keys under which a checkpoint keeps its state dict when the top level holds no tensors.
pub const NESTED_KEYS: [&str; 2] = ["state_dict", "model"];

/// A tensor's values, contiguous and row-major, with its dtype and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// `shape.product() * dtype.size()` little-endian bytes.
    pub data: Vec<u8>,
}

/// A tensor as pickled: a view into a storage.
struct View {
    storage: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

struct StorageDecl {
    dtype: Dtype,
    numel: usize,
}

/// The dtype of a legacy storage class (`torch.FloatStorage`, `torch.cuda.HalfStorage`, ...).
fn storage_dtype(module: &str, name: &str) -> Option<Dtype> {
    if module != "torch" && module != "torch.cuda" {
        return None;
    }
    Some(match name {
        "FloatStorage" => Dtype::F32,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "DoubleStorage" => Dtype::F64,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" | "UntypedStorage" => Dtype::U8,
        "BoolStorage" => Dtype::BOOL,
        _ => return None,
    })
}

/// Interprets the pickled object: the storages it declares and its tensors.
struct Interpreter {
    storages: HashMap<String, StorageDecl>,
}

/// A node of the pickled object, as far as a state dict needs.
enum Node {
    Tensor(View),
    Dict(Vec<(String, Node)>),
    Other(String),
}

impl Interpreter {
    fn storage(&mut self, pid: &Value) -> Result<String, String> {
        let items = pid.items().ok_or_else(|| format!("a persistent id that is a {}", pid.describe()))?;
        if items.len() < 5 || items[0].as_str() != Some("storage") {
            return Err(format!(
                "a persistent id of {} items that is not ('storage', type, key, location, numel)",
                items.len()
            ));
        }
        let Value::Global { module, name } = &items[1] else {
            return Err(format!("a storage type that is a {}", items[1].describe()));
        };
        let dtype = storage_dtype(module, name).ok_or_else(|| format!("unknown storage type {module}.{name}"))?;
        let key =
            items[2].as_str().ok_or_else(|| format!("a storage key that is a {}", items[2].describe()))?.to_owned();
        let numel =
            items[4].as_int().and_then(|n| usize::try_from(n).ok()).ok_or("a storage size that is not a count")?;
        if items.get(5).is_some_and(|v| !matches!(v, Value::None)) {
            return Err(format!("storage {key} is a view of another storage (pre-1.0 format), which is not supported"));
        }
        if let Some(old) = self.storages.insert(key.clone(), StorageDecl { dtype, numel })
            && (old.dtype != dtype || old.numel != numel)
        {
            return Err(format!("storage {key} is declared twice, as {} and {dtype}", old.dtype));
        }
        Ok(key)
    }

    /// Declares every storage reachable from `v` (each shared container visited once).
    fn declare(&mut self, v: &Value, seen: &mut HashSet<usize>) -> Result<(), String> {
        let mut first = |p: usize| seen.insert(p);
        match v {
            Value::Persistent(pid) => {
                self.storage(pid)?;
            }
            Value::Tuple(t) if first(std::rc::Rc::as_ptr(t) as usize) => {
                for x in t.iter() {
                    self.declare(x, seen)?;
                }
            }
            Value::List(l) if first(std::rc::Rc::as_ptr(l) as usize) => {
                for x in l.borrow().iter() {
                    self.declare(x, seen)?;
                }
            }
            Value::Dict(d) if first(std::rc::Rc::as_ptr(d) as usize) => {
                for (_, x) in d.borrow().iter() {
                    self.declare(x, seen)?;
                }
            }
            Value::Call(c) if first(std::rc::Rc::as_ptr(c) as usize) => {
                self.declare(&c.args, seen)?;
                if let Some(state) = c.state.borrow().as_ref() {
                    self.declare(state, seen)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn counts(v: &Value, what: &str) -> Result<Vec<usize>, String> {
        v.items()
            .ok_or_else(|| format!("a tensor {what} that is a {}", v.describe()))?
            .iter()
            .map(|d| {
                d.as_int()
                    .and_then(|d| usize::try_from(d).ok())
                    .ok_or_else(|| format!("a tensor {what} of {}", d.describe()))
            })
            .collect()
    }

    fn node(&mut self, v: &Value) -> Result<Node, String> {
        match v {
            Value::Dict(d) => {
                let mut out = Vec::new();
                for (k, v) in d.borrow().iter() {
                    let key = match k {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        other => other.describe(),
                    };
                    let node = self.node(v).map_err(|e| format!("{key}: {e}"))?;
                    out.push((key, node));
                }
                Ok(Node::Dict(out))
            }
            Value::Call(call) => {
                let Value::Global { module, name } = &call.callable else {
                    return Ok(Node::Other(v.describe()));
                };
                let args = call.args.items().unwrap_or_default();
                match (module.as_str(), name.as_str()) {
                    ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") if args.len() >= 4 => {
                        let Value::Persistent(pid) = &args[0] else {
                            return Err(format!("a tensor whose storage is a {}", args[0].describe()));
                        };
                        let storage = self.storage(pid)?;
                        let offset = args[1]
                            .as_int()
                            .and_then(|o| usize::try_from(o).ok())
                            .ok_or("a tensor storage offset that is not a count")?;
                        let shape = Self::counts(&args[2], "size")?;
                        let stride = Self::counts(&args[3], "stride")?;
                        if shape.len() != stride.len() {
                            return Err(format!("a tensor of size {shape:?} with strides {stride:?}"));
                        }
                        Ok(Node::Tensor(View { storage, offset, shape, stride }))
                    }
                    // nn.Parameter(data, requires_grad, hooks[, state]): the data.
                    ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") if !args.is_empty() => {
                        self.node(&args[0])
                    }
                    // A tensor subclass: func(*args) rebuilds the tensor.
                    ("torch._tensor", "_rebuild_from_type_v2") if args.len() >= 3 => {
                        let inner = pickle::Call {
                            callable: args[0].clone(),
                            args: args[2].clone(),
                            state: Default::default(),
                        };
                        self.node(&Value::Call(std::rc::Rc::new(inner)))
                    }
                    _ => Ok(Node::Other(v.describe())),
                }
            }
            other => Ok(Node::Other(other.describe())),
        }
    }
}

/// The tensors of the pickled object's state dict: the top-level dict if it holds tensors, else
/// the first of [`NESTED_KEYS`] that does (recursively). Entries that are not tensors are skipped.
fn state_dict(node: Node) -> Result<Vec<(String, View)>, String> {
    let Node::Dict(items) = node else {
        let Node::Other(what) = node else { return Err("the object is a single tensor, not a state dict".into()) };
        return Err(format!("the object is a {what}, not a state dict"));
    };
    if items.iter().any(|(_, n)| matches!(n, Node::Tensor(_))) {
        return Ok(items
            .into_iter()
            .filter_map(|(k, n)| match n {
                Node::Tensor(v) => Some((k, v)),
                _ => None,
            })
            .collect());
    }
    let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    for (k, n) in items {
        if NESTED_KEYS.contains(&k.as_str()) && matches!(n, Node::Dict(_)) {
            return state_dict(n).map_err(|e| format!("under {k:?}: {e}"));
        }
    }
    Err(format!("a dict that holds no tensors, nor a state dict under {NESTED_KEYS:?} (its keys: {keys:?})"))
}

/// Copies the elements of `view` out of its storage's bytes, row-major.
fn materialise(view: &View, dtype: Dtype, storage: &[u8]) -> Result<Vec<u8>, String> {
    let size = dtype.size();
    let numel = storage.len() / size;
    let count: usize = view.shape.iter().product();
    if count == 0 {
        return Ok(Vec::new());
    }
    // The largest element index the view reaches must lie inside the storage.
    let last = view
        .shape
        .iter()
        .zip(&view.stride)
        .try_fold(view.offset, |acc, (&n, &s)| acc.checked_add((n - 1).checked_mul(s)?));
    if last.is_none_or(|l| l >= numel) {
        return Err(format!(
            "size {:?}, strides {:?} and offset {} reach past the {numel} elements of storage {}",
            view.shape, view.stride, view.offset, view.storage
        ));
    }
    let mut out = Vec::with_capacity(count * size);
    let dims = view.shape.len();
    // Copy whole runs of the innermost axis where it is contiguous.
    let (run, outer) = match (view.shape.last(), view.stride.last()) {
        (Some(&n), Some(&1)) => (n, dims - 1),
        _ => (1, dims),
    };
    let mut index = vec![0usize; outer];
    loop {
        let start = view.offset + index.iter().zip(&view.stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend_from_slice(&storage[start * size..(start + run) * size]);
        // Next multi-index over the outer axes, last fastest.
        let mut axis = outer;
        loop {
            if axis == 0 {
                return Ok(out);
            }
            axis -= 1;
            index[axis] += 1;
            if index[axis] < view.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
}

/// Reads the state dict of a legacy `torch.save` file: every tensor by name (in the file's order),
/// contiguous, with its dtype and shape. Names are as saved (a `module.` prefix is kept: see
/// [`crate::strip_module_prefix`]).
pub fn read_legacy(path: &Path) -> Result<Vec<(String, RawTensor)>, WeightFileError> {
    let file = std::fs::File::open(path).map_err(WeightFileError::io(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    let bad = |m: String| WeightFileError::format(path, format!("legacy torch.save file: {m}"));
    let mut next = |what: &str, reader: &mut BufReader<std::fs::File>| -> Result<Value, WeightFileError> {
        let (value, read) = pickle::load(reader)
            .map_err(|e| bad(format!("the {what} does not unpickle (at byte {}): {}", offset + e.offset, e.message)))?;
        offset += read;
        Ok(value)
    };
    match next("magic number", &mut reader)? {
        Value::BigInt(b) if b == MAGIC => {}
        other => return Err(bad(format!("the magic number is {}, not 0x1950a86a20f9469cfc6c", other.describe()))),
    }
    let version = next("protocol version", &mut reader)?;
    if version.as_int() != Some(PROTOCOL_VERSION) {
        return Err(bad(format!("protocol version {}, expected {PROTOCOL_VERSION}", version.describe())));
    }
    if let Value::Dict(info) = next("system information", &mut reader)? {
        for (k, v) in info.borrow().iter() {
            if k.as_str() == Some("little_endian") && !matches!(v, Value::Bool(true)) {
                return Err(bad("written on a big-endian machine, which is not supported".into()));
            }
        }
    }
    let object = next("state dict", &mut reader)?;
    let mut interpreter = Interpreter { storages: HashMap::new() };
    // Every storage of the object (an optimiser's too) is declared, so that its bytes can be read past.
    interpreter.declare(&object, &mut HashSet::new()).map_err(&bad)?;
    let node = interpreter.node(&object).map_err(&bad)?;
    let views = state_dict(node).map_err(&bad)?;
    let keys = next("storage key list", &mut reader)?;
    let keys = keys.items().ok_or_else(|| bad(format!("the storage key list is a {}", keys.describe())))?;
    let mut data: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let key = key.as_str().ok_or_else(|| bad(format!("a storage key that is a {}", key.describe())))?.to_owned();
        let decl = interpreter.storages.get(&key);
        let mut count = [0u8; 8];
        reader.read_exact(&mut count).map_err(|e| bad(format!("storage {key}: no element count ({e}; truncated?)")))?;
        let count = u64::from_le_bytes(count);
        let Some(decl) = decl else {
            return Err(bad(format!("storage {key} is listed but nothing in the pickled object declares it")));
        };
        if count != decl.numel as u64 {
            return Err(bad(format!(
                "storage {key} holds {count} elements, its tensors were saved with {}",
                decl.numel
            )));
        }
        let len =
            decl.numel.checked_mul(decl.dtype.size()).ok_or_else(|| bad(format!("storage {key} is too large")))?;
        let mut bytes = Vec::with_capacity(len.min(1 << 30));
        let got = (&mut reader).take(len as u64).read_to_end(&mut bytes).map_err(WeightFileError::io(path))?;
        if got < len {
            return Err(bad(format!("storage {key}: {got} of {len} bytes (truncated?)")));
        }
        data.insert(key, bytes);
    }
    views
        .into_iter()
        .map(|(name, view)| {
            let decl = &interpreter.storages[&view.storage];
            let bytes = data.get(&view.storage).ok_or_else(|| {
                bad(format!("tensor {name}: storage {} is not in the file's storage list", view.storage))
            })?;
            let values = materialise(&view, decl.dtype, bytes).map_err(|e| bad(format!("tensor {name}: {e}")))?;
            Ok((name, RawTensor { dtype: decl.dtype, shape: view.shape, data: values }))
        })
        .collect()
}
