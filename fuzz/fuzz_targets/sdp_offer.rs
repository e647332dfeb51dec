#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    konsilium_tests::fuzz::sdp_offer(data);
});
