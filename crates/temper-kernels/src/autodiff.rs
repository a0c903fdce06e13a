//! The kernels under `Autodiff`: where the inner backend has a fused kernel, the operation is one
//! graph node whose backward is the fused backward kernel; elsewhere the plain twin runs on the
//! autodiff backend and Burn differentiates it op by op.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor};

use crate::{AttentionMask, HeadLogProbs, KernelBackend, float, plain, split_stats, tensor};

type Prim<B> = FloatTensor<B>;

impl<B: KernelBackend, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {
    fn rms_norm<const D: usize>(
        x: Tensor<Self, D>,
        weight: Tensor<Self, 1>,
        eps: f64,
    ) -> Tensor<Self, D> {
        #[derive(Debug)]
        struct RmsNormBackward;
        impl<B: KernelBackend> Backward<B, 2> for RmsNormBackward {
            type State = (Prim<B>, Prim<B>, Prim<B>);
            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let kernels = B::fused_kernels().expect("the forward pass used fused kernels");
                let [node_x, node_w] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, w, inverse_rms) = ops.state;
                let (dx, dw) = (kernels.rms_norm_backward)(grad, x, w, inverse_rms);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, dx);
                }
                if let Some(node) = node_w {
                    grads.register::<B>(node.id, dw);
                }
            }
        }
        let (x_prim, w_prim) = (float(x.clone()), float(weight.clone()));
        let fused = B::fused_kernels()
            .and_then(|k| (k.rms_norm)(x_prim.primitive.clone(), w_prim.primitive.clone(), eps));
        let Some((y, inverse_rms)) = fused else {
            return plain::rms_norm(x, weight, eps);
        };
        let state = (
            x_prim.primitive.clone(),
            w_prim.primitive.clone(),
            inverse_rms,
        );
        tensor(record::<B, C, _, _>(
            RmsNormBackward,
            [&x_prim, &w_prim],
            state,
            y,
        ))
    }

    fn swiglu<const D: usize>(gate: Tensor<Self, D>, up: Tensor<Self, D>) -> Tensor<Self, D> {
        #[derive(Debug)]
        struct SwigluBackward;
        impl<B: KernelBackend> Backward<B, 2> for SwigluBackward {
            type State = (Prim<B>, Prim<B>);
            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let kernels = B::fused_kernels().expect("the forward pass used fused kernels");
                let [node_gate, node_up] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (gate, up) = ops.state;
                let (dgate, dup) = (kernels.swiglu_backward)(grad, gate, up);
                if let Some(node) = node_gate {
                    grads.register::<B>(node.id, dgate);
                }
                if let Some(node) = node_up {
                    grads.register::<B>(node.id, dup);
                }
            }
        }
        let (g, u) = (float(gate.clone()), float(up.clone()));
        let fused =
            B::fused_kernels().and_then(|k| (k.swiglu)(g.primitive.clone(), u.primitive.clone()));
        let Some(y) = fused else {
            return plain::swiglu(gate, up);
        };
        let state = (g.primitive.clone(), u.primitive.clone());
        tensor(record::<B, C, _, _>(SwigluBackward, [&g, &u], state, y))
    }

    fn rope(x: Tensor<Self, 4>, cos: Tensor<Self, 3>, sin: Tensor<Self, 3>) -> Tensor<Self, 4> {
        #[derive(Debug)]
        struct RopeBackward;
        impl<B: KernelBackend> Backward<B, 1> for RopeBackward {
            type State = (Prim<B>, Prim<B>);
            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let kernels = B::fused_kernels().expect("the forward pass used fused kernels");
                let [node_x] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (cos, sin) = ops.state;
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, (kernels.rope_backward)(grad, cos, sin));
                }
            }
        }
        let x_prim = float(x.clone());
        let (cos_inner, sin_inner) = (float(cos.clone()).primitive, float(sin.clone()).primitive);
        let fused = B::fused_kernels().and_then(|k| {
            (k.rope)(
                x_prim.primitive.clone(),
                cos_inner.clone(),
                sin_inner.clone(),
            )
        });
        let Some(y) = fused else {
            return plain::rope(x, cos, sin);
        };
        tensor(record::<B, C, _, _>(
            RopeBackward,
            [&x_prim],
            (cos_inner, sin_inner),
            y,
        ))
    }

    fn attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        mask: &AttentionMask<Self>,
    ) -> Tensor<Self, 4> {
        #[derive(Debug)]
        struct AttentionBackward;
        impl<B: KernelBackend> Backward<B, 3> for AttentionBackward {
            /// q, k, v, padding, window, output, logsumexp.
            type State = (
                Prim<B>,
                Prim<B>,
                Prim<B>,
                Prim<B>,
                Option<usize>,
                Prim<B>,
                Prim<B>,
            );
            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let kernels = B::fused_kernels().expect("the forward pass used fused kernels");
                let [node_q, node_k, node_v] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (q, k, v, padding, window, out, lse) = ops.state;
                let (dq, dk, dv) =
                    (kernels.attention_backward)(grad, q, k, v, padding, window, out, lse);
                if let Some(node) = node_q {
                    grads.register::<B>(node.id, dq);
                }
                if let Some(node) = node_k {
                    grads.register::<B>(node.id, dk);
                }
                if let Some(node) = node_v {
                    grads.register::<B>(node.id, dv);
                }
            }
        }
        let (qp, kp, vp) = (float(q.clone()), float(k.clone()), float(v.clone()));
        let padding = float(mask.padding.clone()).primitive;
        let fused = B::fused_kernels().and_then(|kernels| {
            (kernels.attention)(
                qp.primitive.clone(),
                kp.primitive.clone(),
                vp.primitive.clone(),
                padding.clone(),
                mask.window,
            )
        });
        let Some((out, lse)) = fused else {
            return plain::attention(q, k, v, mask);
        };
        let state = (
            qp.primitive.clone(),
            kp.primitive.clone(),
            vp.primitive.clone(),
            padding,
            mask.window,
            out.clone(),
            lse,
        );
        tensor(record::<B, C, _, _>(
            AttentionBackward,
            [&qp, &kp, &vp],
            state,
            out,
        ))
    }

    fn lm_head_log_probs(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        labels: Tensor<Self, 1, Int>,
        scale: f64,
        stats: bool,
    ) -> HeadLogProbs<Self> {
        #[derive(Debug)]
        struct LmHeadBackward;
        impl<B: KernelBackend> Backward<B, 2> for LmHeadBackward {
            /// hidden, weight, labels, logsumexp, scale.
            type State = (Prim<B>, Prim<B>, IntTensor<B>, Prim<B>, f64);
            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let kernels = B::fused_kernels().expect("the forward pass used fused kernels");
                let [node_hidden, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (hidden, weight, labels, lse, scale) = ops.state;
                let weight_grad = node_weight.is_some();
                let (dhidden, dweight) = (kernels.lm_head_backward)(
                    grad,
                    hidden,
                    weight,
                    labels,
                    lse,
                    scale,
                    weight_grad,
                );
                if let Some(node) = node_hidden {
                    grads.register::<B>(node.id, dhidden);
                }
                if let (Some(node), Some(dweight)) = (node_weight, dweight) {
                    grads.register::<B>(node.id, dweight);
                }
            }
        }
        let (h, w) = (float(hidden.clone()), float(weight.clone()));
        let label_prim: IntTensor<B> = labels.clone().into_primitive();
        let fused = B::fused_kernels().and_then(|k| {
            (k.lm_head)(
                h.primitive.clone(),
                w.primitive.clone(),
                label_prim.clone(),
                scale,
                stats,
            )
        });
        let Some((log_probs, lse, head_stats)) = fused else {
            return plain::lm_head_log_probs(hidden, weight, labels, scale, stats);
        };
        let state = (
            h.primitive.clone(),
            w.primitive.clone(),
            label_prim,
            lse,
            scale,
        );
        let output = record::<B, C, _, _>(LmHeadBackward, [&h, &w], state, log_probs);
        HeadLogProbs {
            log_probs: tensor(output),
            stats: head_stats.map(|s| split_stats(Tensor::from_inner(tensor::<B, 2>(s)))),
        }
    }
}

/// Puts a fused kernel's `output` into the graph as one compute-bound node of `op` over
/// `inputs`, keeping `state` for its backward (dropped when no input requires a gradient).
fn record<B, C, Op, const N: usize>(
    op: Op,
    inputs: [&FloatTensor<Autodiff<B, C>>; N],
    state: Op::State,
    output: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: KernelBackend,
    C: CheckpointStrategy,
    Op: Backward<B, N>,
{
    match op
        .prepare::<C>(inputs.map(|input| input.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}
