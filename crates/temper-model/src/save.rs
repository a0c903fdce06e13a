//! Writes a model back in Hugging Face layout: `config.json`, safetensors (sharded above a
//! size, with `model.safetensors.index.json`), and the source directory's generation config and
//! tokenizer files, so that `transformers` loads it. LoRA adapters are written as PEFT
//! directories. Tensors are converted shard by shard, so saving holds one shard in memory.
//!
//! A model with a score head is written as transformers writes a `*ForSequenceClassification`:
//! `score.weight` and no `lm_head`, and a `config.json` naming that class in `architectures`,
//! with `id2label`/`label2id` (`LABEL_0`, ...; transformers counts the labels from `id2label`)
//! and the head's `pad_token_id` (which transformers needs to find each row's last token).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, backend::Backend};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::{Value, json};

use crate::config::Family;
use crate::hf_names as names;
use crate::lora::LoraConfig;
use crate::model::{CausalLm, HeadRef};

/// Files copied from the source model directory when present.
pub const COPIED_FILES: [&str; 9] = [
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
];

/// The element type written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    Bf16,
    F16,
}

impl SaveDtype {
    fn name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::Bf16 => "bfloat16",
            Self::F16 => "float16",
        }
    }

    fn bytes_per_value(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 | Self::F16 => 2,
        }
    }
}

/// Settings of [`save_model`].
#[derive(Clone, Debug, PartialEq)]
pub struct SaveOptions {
    pub dtype: SaveDtype,
    /// Shards hold at most this many bytes of tensor data (transformers' default is 5 GB).
    pub max_shard_bytes: usize,
}

impl Default for SaveOptions {
    fn default() -> Self {
        Self {
            dtype: SaveDtype::F32,
            max_shard_bytes: 5_000_000_000,
        }
    }
}

/// Why saving failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error(
        "the model has LoRA adapters: merge them (merge_adapters) or save them with save_adapter"
    )]
    UnmergedAdapters,
    #[error("{0}: the model would be saved over the directory it is read from")]
    OverItsSource(PathBuf),
}

/// A tensor to write: its HF name, its shape in the file, and its values read on demand (so a
/// shard is converted only when it is written).
struct Entry {
    name: String,
    shape: Vec<usize>,
    values: Box<dyn Fn() -> Vec<f32>>,
}

/// `transpose`: a Burn `[in, out]` linear weight written as HF's `[out, in]`.
fn entry<B: Backend, const D: usize>(name: String, tensor: Tensor<B, D>, transpose: bool) -> Entry {
    let dims = tensor.dims();
    let shape = if transpose {
        vec![dims[1], dims[0]]
    } else {
        dims.to_vec()
    };
    Entry {
        name,
        shape,
        values: Box::new(move || {
            let t = tensor.clone();
            let data = if transpose {
                let t2: Tensor<B, 2> = t.reshape([dims[0], dims[1]]);
                t2.transpose().into_data()
            } else {
                t.into_data()
            };
            data.convert::<f32>().to_vec::<f32>().expect("float tensor")
        }),
    }
}

/// Saves `model` to `out_dir` in HF layout, taking `config.json` and the tokenizer and
/// generation files from `source_dir` (the directory it was loaded from).
pub fn save_model<B: Backend>(
    model: &CausalLm<B>,
    source_dir: &Path,
    out_dir: &Path,
    options: &SaveOptions,
) -> Result<(), SaveError> {
    let has_adapters = model
        .layers
        .iter()
        .any(|layer| layer.projections().iter().any(|(_, p)| p.lora.is_some()));
    if has_adapters {
        return Err(SaveError::UnmergedAdapters);
    }
    // Its config and tokenizer files are copied from `source_dir`: a copy onto itself would
    // leave them empty. (An `out_dir` that does not exist yet cannot be `source_dir`.)
    if let (Ok(source), Ok(out)) = (source_dir.canonicalize(), out_dir.canonicalize())
        && source == out
    {
        return Err(SaveError::OverItsSource(out_dir.to_path_buf()));
    }
    std::fs::create_dir_all(out_dir).map_err(|source| io(out_dir, source))?;
    let entries = model_entries(model);
    write_shards(&entries, out_dir, options)?;
    let head = model
        .score_head()
        .map(|score| (score.num_labels(), score.pad_token_id));
    write_config(source_dir, out_dir, options.dtype, head)?;
    for file in COPIED_FILES {
        let from = source_dir.join(file);
        if from.is_file() {
            std::fs::copy(&from, out_dir.join(file)).map_err(|source| io(&from, source))?;
        }
    }
    Ok(())
}

fn model_entries<B: Backend>(model: &CausalLm<B>) -> Vec<Entry> {
    let mut entries = vec![entry(
        names::EMBED_TOKENS.into(),
        model.embed_tokens.weight.val(),
        false,
    )];
    for (i, layer) in model.layers.iter().enumerate() {
        let p = |name: &str| names::in_layer(i, name);
        let attn = &layer.self_attn;
        for (name, projection) in layer.projections() {
            let weight = projection.linear.weight.val();
            entries.push(entry(p(&format!("{name}.weight")), weight, true));
            if let Some(bias) = &projection.linear.bias {
                entries.push(entry(p(&format!("{name}.bias")), bias.val(), false));
            }
        }
        if let (Some(q), Some(k)) = (&attn.q_norm, &attn.k_norm) {
            entries.push(entry(p(names::Q_NORM), q.weight.val(), false));
            entries.push(entry(p(names::K_NORM), k.weight.val(), false));
        }
        let [attention_norm, mlp_norm] = names::layer_norms(layer.post_norm);
        entries.push(entry(
            p(attention_norm),
            layer.attention_norm.weight.val(),
            false,
        ));
        entries.push(entry(p(mlp_norm), layer.mlp_norm.weight.val(), false));
    }
    entries.push(entry(
        names::FINAL_NORM.into(),
        model.norm.weight.val(),
        false,
    ));
    match model.head() {
        HeadRef::TiedLm => {}
        HeadRef::Lm(head) => {
            let name = format!("{}.weight", names::LM_HEAD);
            entries.push(entry(name, head.weight.val(), true));
        }
        HeadRef::Score(score) => {
            let name = format!("{}.weight", names::SCORE);
            entries.push(entry(name, score.weight.val(), true));
        }
    }
    entries
}

/// Splits entries into shards in order and writes them (one shard's bytes in memory at a time).
fn write_shards(entries: &[Entry], out_dir: &Path, options: &SaveOptions) -> Result<(), SaveError> {
    let size = |e: &Entry| e.shape.iter().product::<usize>() * options.dtype.bytes_per_value();
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut current = 0;
    for (i, e) in entries.iter().enumerate() {
        let bytes = size(e);
        if current > 0 && current + bytes > options.max_shard_bytes {
            shards.push(Vec::new());
            current = 0;
        }
        shards.last_mut().expect("one shard at least").push(i);
        current += bytes;
    }
    let count = shards.len();
    let file_name = |k: usize| {
        if count == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{count:05}.safetensors", k + 1)
        }
    };
    let mut weight_map = BTreeMap::new();
    for (k, shard) in shards.iter().enumerate() {
        let path = out_dir.join(file_name(k));
        let encoded: Vec<(String, Vec<u8>, Vec<usize>)> = shard
            .iter()
            .map(|&i| {
                let e = &entries[i];
                weight_map.insert(e.name.clone(), file_name(k));
                (
                    e.name.clone(),
                    encode((e.values)(), options.dtype),
                    e.shape.clone(),
                )
            })
            .collect();
        write_safetensors(&encoded, options.dtype, &path)?;
    }
    if count > 1 {
        let total: usize = entries.iter().map(size).sum();
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let path = out_dir.join("model.safetensors.index.json");
        write_json(&path, &index)?;
    }
    Ok(())
}

fn encode(values: Vec<f32>, dtype: SaveDtype) -> Vec<u8> {
    match dtype {
        SaveDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        SaveDtype::Bf16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        SaveDtype::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
    }
}

/// Writes tensors with the `{"format": "pt"}` metadata transformers requires.
fn write_safetensors(
    tensors: &[(String, Vec<u8>, Vec<usize>)],
    dtype: SaveDtype,
    path: &Path,
) -> Result<(), SaveError> {
    let dtype = match dtype {
        SaveDtype::F32 => Dtype::F32,
        SaveDtype::Bf16 => Dtype::BF16,
        SaveDtype::F16 => Dtype::F16,
    };
    let failed = |reason: String| SaveError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let views = tensors
        .iter()
        .map(|(name, bytes, shape)| {
            TensorView::new(dtype, shape.clone(), bytes)
                .map(|view| (name.as_str(), view))
                .map_err(|e| failed(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| failed(e.to_string()))
}

/// The source `config.json` with its dtype fields set to what was written; for a score head
/// (`Some((num_labels, pad_token_id))`), also the sequence-classification fields.
fn write_config(
    source_dir: &Path,
    out_dir: &Path,
    dtype: SaveDtype,
    score_head: Option<(usize, Option<u32>)>,
) -> Result<(), SaveError> {
    let from = source_dir.join("config.json");
    let text = std::fs::read_to_string(&from).map_err(|source| io(&from, source))?;
    let invalid = |reason: String| SaveError::Write {
        path: from.clone(),
        reason,
    };
    let mut config: Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let Some(object) = config.as_object_mut() else {
        return Err(invalid("config.json is not a JSON object".into()));
    };
    for key in ["dtype", "torch_dtype"] {
        if object.contains_key(key) || key == "dtype" {
            object.insert(key.to_string(), json!(dtype.name()));
        }
    }
    if let Some((num_labels, pad_token_id)) = score_head {
        let family = object
            .get("model_type")
            .and_then(Value::as_str)
            .and_then(|name| Family::ALL.iter().find(|(n, _)| *n == name))
            .map(|(_, family)| *family)
            .ok_or_else(|| invalid("no supported `model_type`".into()))?;
        object.insert(
            "architectures".into(),
            json!([family.sequence_classification_class()]),
        );
        // Labels a sequence-classification source already names are kept.
        let kept = object
            .get("id2label")
            .and_then(Value::as_object)
            .is_some_and(|labels| labels.len() == num_labels);
        if !kept {
            let id2label: serde_json::Map<String, Value> = (0..num_labels)
                .map(|i| (i.to_string(), json!(format!("LABEL_{i}"))))
                .collect();
            let label2id: serde_json::Map<String, Value> = (0..num_labels)
                .map(|i| (format!("LABEL_{i}"), json!(i)))
                .collect();
            object.insert("id2label".into(), Value::Object(id2label));
            object.insert("label2id".into(), Value::Object(label2id));
        }
        object.remove("num_labels");
        if let Some(pad) = pad_token_id {
            object.insert("pad_token_id".into(), json!(pad));
        }
    }
    write_json(&out_dir.join("config.json"), &config)
}

fn write_json(path: &Path, value: &Value) -> Result<(), SaveError> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n";
    std::fs::write(path, text).map_err(|source| io(path, source))
}

fn io(path: &Path, source: std::io::Error) -> SaveError {
    SaveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the model's adapters as a PEFT directory (`adapter_config.json`,
/// `adapter_model.safetensors`), loadable by PEFT onto the base model. A model with a score head
/// is written as PEFT's `SEQ_CLS` task: its `score` weights go with the adapters.
pub fn save_adapter<B: Backend>(
    model: &CausalLm<B>,
    config: &LoraConfig,
    base_model_class: &str,
    out_dir: &Path,
) -> Result<(), SaveError> {
    std::fs::create_dir_all(out_dir).map_err(|source| io(out_dir, source))?;
    let mut tensors = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        for (name, projection) in layer.projections() {
            let Some(lora) = &projection.lora else {
                continue;
            };
            let prefix = format!("base_model.model.model.layers.{i}.{name}");
            // PEFT: lora_A.weight [r, in] = aᵀ, lora_B.weight [out, r] = bᵀ.
            for (suffix, matrix) in [("lora_A", lora.a.val()), ("lora_B", lora.b.val())] {
                let e = entry::<B, 2>(format!("{prefix}.{suffix}.weight"), matrix, true);
                tensors.push((
                    e.name.clone(),
                    encode((e.values)(), SaveDtype::F32),
                    e.shape.clone(),
                ));
            }
        }
    }
    if let Some(score) = model.score_head() {
        let e = entry::<B, 2>(crate::lora::SCORE_KEY.into(), score.weight.val(), true);
        tensors.push((
            e.name.clone(),
            encode((e.values)(), SaveDtype::F32),
            e.shape.clone(),
        ));
    }
    write_safetensors(
        &tensors,
        SaveDtype::F32,
        &out_dir.join("adapter_model.safetensors"),
    )?;
    let path = out_dir.join("adapter_config.json");
    let text = config.peft_json(base_model_class, model.is_score_model());
    std::fs::write(&path, text + "\n").map_err(|source| io(&path, source))
}
