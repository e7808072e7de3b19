//! The TOML config file: settings as flags after the subcommand, or an error naming the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::ffi::OsString;

fuzz_target!(|content: &str| {
    let args: Vec<OsString> = ["tokenmint", "serve"].map(OsString::from).to_vec();
    match tokenmint::config::apply_config(args.clone(), "t.toml", content, |_| None) {
        Ok(patched) => assert!(patched.starts_with(&args)),
        Err(error) => assert!(error.starts_with("config file t.toml")),
    }
});
