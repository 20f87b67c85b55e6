//! Support for writing your own `#[tokio::test]`s with the harness.
//!
//! - [`boot`] starts a profile with the run named `<test>-<profile>`
//!   ([`run_name`]), so each profile of a test keeps its own artifacts;
//! - [`test_name!`](crate::test_name) is the name of the test function it
//!   is used in;
//! - `assert_profile_snapshot!` (cargo
//!   feature `insta`) asserts a snapshot with insta into one file per
//!   profile: `snapshots/<name>@<profile>.snap` beside the test file.
//!
//! ```no_run
//! #[tokio::test]
//! async fn edu_appears() -> anyhow::Result<()> {
//!     let vm = harness::testing::boot("pc", harness::test_name!()).await?;
//!     let plugged = vm.plug(&harness::Plug::new("edu", "edu0")).await?;
//!     assert_eq!(vm.read_attr(&format!("{}/vendor", plugged.devpath)).await?, "0x1234");
//!     vm.shutdown().await
//! }
//! ```

use anyhow::Result;

use crate::vm::{Vm, VmConfig};

/// The run name for `test` on `profile`: `<test>-<profile>`. It names the
/// artifact directory and appears in the harness's messages.
pub fn run_name(test: &str, profile: &str) -> String {
    format!("{test}-{profile}")
}

/// The default configuration for `test` on `profile`, named by [`run_name`].
/// Change what you need, then [`Vm::boot`] it.
pub fn config(profile: &str, test: &str) -> Result<VmConfig> {
    VmConfig::new(profile, &run_name(test, profile))
}

/// Boot `profile` for `test` with the defaults ([`config`]).
pub async fn boot(profile: &str, test: &str) -> Result<Vm> {
    Vm::boot(config(profile, test)?).await
}

/// The last segment of a function's type name, without the `{{closure}}`
/// segments an `async fn` or `#[tokio::test]` adds: what
/// [`test_name!`](crate::test_name) returns.
#[doc(hidden)]
pub fn function_name(type_name: &'static str) -> &'static str {
    let path = type_name.strip_suffix("::here").unwrap_or(type_name);
    path.rsplit("::").find(|segment| !segment.starts_with("{{")).unwrap_or(path)
}

/// The name of the function this is used in (for a test, the test's name),
/// e.g. to name its run: `harness::testing::boot("pc", harness::test_name!())`.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn here() {}
        fn type_name_of<T>(_: T) -> &'static str {
            ::std::any::type_name::<T>()
        }
        $crate::testing::function_name(type_name_of(here))
    }};
}

/// Assert `value` with insta as the snapshot `name`, one file per profile:
/// `snapshots/<name>@<profile>.snap` beside the test file. Review changes
/// with `cargo insta review`; under `CI=true` a changed snapshot fails.
/// Needs the harness's `insta` feature:
///
/// ```toml
/// harness = { path = "../harness", features = ["insta"] }
/// ```
#[cfg(feature = "insta")]
#[macro_export]
macro_rules! assert_profile_snapshot {
    ($profile:expr, $name:expr, $value:expr $(,)?) => {{
        let mut settings = $crate::testing::__insta::Settings::clone_current();
        settings.set_snapshot_suffix($profile);
        settings.set_prepend_module_to_snapshot(false);
        settings.bind(|| $crate::testing::__insta::assert_snapshot!($name, $value));
    }};
}

#[cfg(feature = "insta")]
#[doc(hidden)]
pub use insta as __insta;

#[cfg(test)]
mod tests {
    #[test]
    fn test_name_is_the_enclosing_function() {
        assert_eq!(crate::test_name!(), "test_name_is_the_enclosing_function");
        let in_closure = || crate::test_name!();
        assert_eq!(in_closure(), "test_name_is_the_enclosing_function");
    }

    #[tokio::test]
    async fn test_name_in_an_async_test() {
        assert_eq!(crate::test_name!(), "test_name_in_an_async_test");
    }
}
