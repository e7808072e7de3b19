//! Marks the store's PostgreSQL tests ignored, not passed, when no database is configured.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tokenmint_postgres_tests)");
    println!("cargo:rerun-if-env-changed=TOKENMINT_TEST_DATABASE_URL");
    if std::env::var("TOKENMINT_TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty()) {
        println!("cargo:rustc-cfg=tokenmint_postgres_tests");
    }
}
