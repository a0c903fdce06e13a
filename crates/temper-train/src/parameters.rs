//! Parameters by name. Burn gives parameters random ids each time a model is built; names (the
//! field path, `layers.0.self_attn.q_proj.linear.weight`) are what stays the same between a run
//! and its resumption, and what transformers' weight-decay rule looks at.

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

/// One float parameter of a module.
#[derive(Clone, Debug, PartialEq)]
pub struct ParameterInfo {
    pub id: ParamId,
    /// Field path joined by dots.
    pub name: String,
    pub shape: Vec<usize>,
    pub trains: bool,
}

/// Every float parameter of `model`, in visiting order.
pub fn parameters<B: Backend, M: burn::module::Module<B>>(model: &M) -> Vec<ParameterInfo> {
    struct Collect {
        path: Vec<String>,
        found: Vec<ParameterInfo>,
    }
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.found.push(ParameterInfo {
                id: param.id,
                name: self.path.join("."),
                shape: param.shape().to_vec(),
                trains: param.is_require_grad(),
            });
        }
    }
    let mut collect = Collect {
        path: Vec::new(),
        found: Vec::new(),
    };
    model.visit(&mut collect);
    collect.found
}

/// Whether weight decay applies to the parameter `name`: transformers' Trainer exempts biases
/// and normalisation weights (`get_decay_parameter_names`: names matching `bias`, `layernorm`,
/// `rmsnorm`, `(^|.)norm(.|$)` or `_norm(.|$)`).
pub fn decays(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let segments: Vec<&str> = lower.split('.').collect();
    let exempt = lower.contains("bias")
        || lower.contains("layernorm")
        || lower.contains("rmsnorm")
        || segments
            .iter()
            .any(|s| *s == "norm" || s.ends_with("_norm"));
    !exempt
}

/// Σ‖g‖² over every gradient `gradients` holds for `model`'s parameters, summed on the device
/// and read back once.
pub fn squared_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    gradients: &GradientsParams,
) -> f64 {
    struct Sum<'a, B: AutodiffBackend> {
        gradients: &'a GradientsParams,
        total: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Sum<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.gradients.get::<B::InnerBackend, D>(param.id) {
                // Row sums first: burn-flex sums a whole tensor of 4M elements or more in parallel
                // in an order that depends on the scheduling, but each row in a fixed order, so
                // the norm (and every clipped update) is the same bits run to run.
                let width = g.dims()[D - 1].max(1);
                let rows = g.shape().num_elements() / width;
                let square = g.square().reshape([rows, width]).sum_dim(1).sum();
                self.total = Some(match self.total.take() {
                    Some(total) => total + square,
                    None => square,
                });
            }
        }
    }
    let mut sum = Sum::<B> {
        gradients,
        total: None,
    };
    model.visit(&mut sum);
    sum.total.map_or(0.0, |t| {
        t.into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .map_or(f64::NAN, |v| v[0])
    })
}

/// Replaces every gradient of `model`'s parameters by `f(gradient)`.
pub fn map_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    gradients: &mut GradientsParams,
    f: impl Fn(Tensor<B::InnerBackend, 1>) -> Tensor<B::InnerBackend, 1>,
) {
    struct Apply<'a, B: AutodiffBackend, F> {
        gradients: &'a mut GradientsParams,
        f: F,
        _backend: std::marker::PhantomData<B>,
    }
    impl<B: AutodiffBackend, F> ModuleVisitor<B> for Apply<'_, B, F>
    where
        F: Fn(Tensor<B::InnerBackend, 1>) -> Tensor<B::InnerBackend, 1>,
    {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.gradients.remove::<B::InnerBackend, D>(param.id) {
                let shape = g.shape();
                let mapped = (self.f)(g.reshape([shape.num_elements()])).reshape(shape);
                self.gradients
                    .register::<B::InnerBackend, D>(param.id, mapped);
            }
        }
    }
    model.visit(&mut Apply::<B, _> {
        gradients,
        f,
        _backend: std::marker::PhantomData,
    });
}

/// A mapper that knows the name of the parameter it maps.
pub(crate) struct Named<F> {
    path: Vec<String>,
    pub(crate) f: F,
}

impl<F> Named<F> {
    pub(crate) fn new(f: F) -> Self {
        Self {
            path: Vec::new(),
            f,
        }
    }
}

/// What a [`Named`] mapper does to one parameter: gets its name, id and value, returns the new
/// value.
pub(crate) trait MapNamed<B: Backend> {
    fn map<const D: usize>(&mut self, name: &str, id: ParamId, value: Tensor<B, D>)
    -> Tensor<B, D>;
}

impl<B: Backend, F: MapNamed<B>> ModuleMapper<B> for Named<F> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, value, mapper) = param.consume();
        let name = self.path.join(".");
        let value = self.f.map(&name, id, value);
        Param::from_mapped_value(id, value, mapper)
    }
}
