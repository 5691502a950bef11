//! `autocluster check -c FILE`: load, validate, and print the resolved configuration.

use std::io::Write;
use std::path::Path;

use autocluster::dispatch::{build_backend, compiled_backends, is_compiled_in};
use autocluster::Settings;

use crate::cli::CheckArgs;
use crate::{print_out, Failure};

/// Loads the file, prints the settings (secrets hidden) on stdout, and builds the backend to
/// check what only the backend checks (a TLS file that is missing). Exit 2 on any
/// configuration problem.
///
/// The keys with no effect here and the warnings are printed once, at the end of the
/// settings (`Settings::render` lists them), not repeated on stderr. A backend that
/// authenticates peers with the cookie running on the public default one is warned about on
/// stderr.
pub fn run(args: &CheckArgs) -> Result<(), Failure> {
    let settings = load(&args.config)?;
    print_out(&settings.render())?;
    if let Some(warning) = settings.cookie_warning() {
        // A closed stderr loses the line; it does not fail the check.
        let _ = writeln!(std::io::stderr(), "warning: {warning}");
    }
    let backend = settings.discovery.as_str();
    // Building needs no network; a backend left out of this build fails here too, naming
    // the cargo feature it needs. In `check`, any failure here is the configuration's.
    build_backend(&settings).map_err(Failure::config)?;
    let included = if is_compiled_in(backend) {
        "included in this build"
    } else {
        "not in this build"
    };
    print_out(&format!(
        "\nbackend: {backend} ({included}, built without errors; this build has: {})\n\
         configuration OK\n",
        compiled_backends().join(", ")
    ))
}

/// Loads the settings; a configuration error exits 2 with every problem located, and names
/// the backends of this build when `cluster.discovery` is what is wrong.
pub fn load(path: &Path) -> Result<Settings, Failure> {
    Settings::load(path).map_err(|e| {
        let mut text = e.to_string();
        if e.problems()
            .iter()
            .any(|p| p.contains("cluster.discovery ="))
        {
            text.push_str("\nthis build includes: ");
            text.push_str(&compiled_backends().join(", "));
        }
        Failure::config(text)
    })
}
