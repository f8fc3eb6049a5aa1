#![no_main]
// Errors are fine; a panic, a hang or an unbounded allocation is a finding.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nabla::parsers::report_run(data);
});
