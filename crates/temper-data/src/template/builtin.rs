//! Templates for tokenizers that ship none (base models): ChatML and the Llama 3 header format.
//! Written for Temper; they render the same layout as the Qwen and Llama 3 templates without
//! those templates' tool and date handling.

/// ChatML: `<|im_start|>role\ncontent<|im_end|>\n` per message.
pub(crate) const CHATML: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Llama 3: `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` after the bos token.
pub(crate) const LLAMA3: &str = "{{ bos_token }}\
{% for message in messages %}\
{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
