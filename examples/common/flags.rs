//! The benchmarks' `--name value` flags (shared by the examples through `#[path]`; a flag
//! parser crate would be more than these few optional values need).

/// The text after `name` on the command line.
pub fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The number after `name` on the command line.
pub fn arg(name: &str) -> Option<usize> {
    text_arg(name).and_then(|v| v.parse().ok())
}
