//! Where a model's parameters come from while it is being built.
//!
//! Models are built by walking their module tree and asking a [`WeightSource`] for each named
//! parameter with its expected shape. The source either hands over tensors from a state dict
//! (checking the shape, and remembering every missing, mis-shaped or unused key so that all
//! problems are reported together by name), draws seeded random values (benchmarks), or returns
//! zero-memory placeholders so that the full-size module tree can be walked for its names and
//! shapes without allocating gigabytes.
//!
//! We use our own source instead of `tch::nn::VarStore` because a VarStore allocates every
//! variable before loading, cannot walk a full model without memory, and stops at the first
//! missing name.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use tch::{Device, Kind, Tensor};

use crate::error::{DiffusionError, FLOAT_DTYPES, KeyProblem, dtype_name};

/// Names and shapes of every parameter of a model, in a stable (sorted) order.
pub type Manifest = BTreeMap<String, Vec<i64>>;

enum Mode {
    /// Tensors of a state dict, removed as they are taken.
    StateDict(RefCell<HashMap<String, Tensor>>),
    /// Placeholders that occupy no memory: a one-element tensor expanded to the shape.
    ShapesOnly,
    /// Seeded random values, scaled by 1/sqrt(fan-in) (norm weights near 1).
    Random,
}

/// Supplies named parameters to model constructors and records what was asked for.
pub struct WeightSource {
    mode: Mode,
    device: Device,
    kind: Kind,
    name: String,
    taken: RefCell<Manifest>,
    problems: RefCell<Vec<KeyProblem>>,
}

impl WeightSource {
    /// Parameters from a state dict; `name` (e.g. a file path) appears in error messages. Tensors
    /// are cast to `kind`; they must be stored in a floating-point dtype (f32, f16, bf16 or f64).
    pub fn from_state_dict(
        tensors: HashMap<String, Tensor>,
        name: impl Into<String>,
        device: Device,
        kind: Kind,
    ) -> Self {
        Self::new(Mode::StateDict(RefCell::new(tensors)), name, device, kind)
    }

    /// Zero-memory placeholders: for walking the module tree to list names and shapes.
    pub fn shapes_only() -> Self {
        Self::new(Mode::ShapesOnly, "shape walk", Device::Cpu, Kind::Float)
    }

    /// Seeded random parameters (for benchmarks and smoke tests; not a trained model).
    pub fn random(seed: u64, device: Device, kind: Kind) -> Self {
        // tch exposes no per-call generator, so the global libtorch generator is seeded here.
        tch::manual_seed(seed as i64);
        Self::new(Mode::Random, format!("random weights (seed {seed})"), device, kind)
    }

    fn new(mode: Mode, name: impl Into<String>, device: Device, kind: Kind) -> Self {
        Self {
            mode,
            device,
            kind,
            name: name.into(),
            taken: RefCell::new(Manifest::new()),
            problems: RefCell::new(Vec::new()),
        }
    }

    /// The root of the parameter name space.
    pub fn root(&self) -> Scope<'_> {
        Scope { source: self, prefix: String::new() }
    }

    /// The device that parameters are placed on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The floating-point kind that parameters are converted to.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn take(&self, name: String, shape: &[i64]) -> Tensor {
        self.taken.borrow_mut().insert(name.clone(), shape.to_vec());
        let placeholder = || Tensor::zeros([1], (self.kind, Device::Cpu)).expand(shape, false);
        match &self.mode {
            Mode::ShapesOnly => placeholder(),
            Mode::Random => random_parameter(&name, shape, self.device, self.kind),
            Mode::StateDict(map) => match map.borrow_mut().remove(&name) {
                None => {
                    self.problems.borrow_mut().push(KeyProblem::Missing { name, expected: shape.to_vec() });
                    placeholder()
                }
                Some(t) => {
                    let dtype = dtype_name(t.kind());
                    let float = FLOAT_DTYPES.contains(&dtype.as_str());
                    let shaped = t.size() == shape;
                    if !shaped {
                        self.problems.borrow_mut().push(KeyProblem::Shape {
                            name: name.clone(),
                            expected: shape.to_vec(),
                            found: t.size(),
                        });
                    }
                    if !float {
                        self.problems.borrow_mut().push(KeyProblem::Dtype { name, found: dtype });
                    }
                    if shaped && float { t.to_device(self.device).to_kind(self.kind) } else { placeholder() }
                }
            },
        }
    }

    /// Ends the build: every problem found (missing, mis-shaped and unused keys) becomes one
    /// [`DiffusionError::Keys`] naming them; otherwise returns the manifest of what was built.
    pub fn finish(self, model: &str) -> Result<Manifest, DiffusionError> {
        let mut problems = self.problems.into_inner();
        if let Mode::StateDict(map) = self.mode {
            let mut unused: Vec<String> = map.into_inner().into_keys().collect();
            unused.sort();
            problems.extend(unused.into_iter().map(|name| KeyProblem::Unexpected { name }));
        }
        if problems.is_empty() {
            Ok(self.taken.into_inner())
        } else {
            Err(DiffusionError::Keys { source_name: self.name, model: model.to_owned(), problems })
        }
    }
}

fn random_parameter(name: &str, shape: &[i64], device: Device, kind: Kind) -> Tensor {
    let opts = (Kind::Float, device);
    let is_norm = name.contains("norm");
    let t = if shape.len() == 1 && is_norm && name.ends_with(".weight") {
        Tensor::ones(shape, opts)
    } else if shape.len() == 1 {
        Tensor::zeros(shape, opts)
    } else {
        let fan_in: i64 = shape[1..].iter().product();
        Tensor::randn(shape, opts) / (fan_in.max(1) as f64).sqrt()
    };
    t.to_kind(kind)
}

/// A position in the parameter name space (`down_blocks.0.resnets.1`, ...).
#[derive(Clone)]
pub struct Scope<'a> {
    source: &'a WeightSource,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// The scope one level down, `prefix.name`.
    pub fn sub(&self, name: impl std::fmt::Display) -> Scope<'a> {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        Scope { source: self.source, prefix }
    }

    /// The parameter `prefix.name`, which must have `shape`.
    pub fn tensor(&self, name: &str, shape: &[i64]) -> Tensor {
        self.source.take(self.sub(name).prefix, shape)
    }

    /// The device parameters live on.
    pub fn device(&self) -> Device {
        self.source.device
    }

    /// The kind parameters are stored in.
    pub fn kind(&self) -> Kind {
        self.source.kind
    }
}
