//! Writes the `espresso` man pages and shell completions, generated from
//! the parser itself (`control::cli::Cli`), so they never drift from the
//! command line:
//!
//! ```text
//! cargo run -p espresso-control --example gen-docs -- OUT_DIR
//! ```
//!
//! gives `OUT_DIR/man1/espresso.1` and one `espresso-SUBCOMMAND.1` per
//! subcommand, and `OUT_DIR/completions/` with `espresso.bash`, `_espresso`
//! (zsh) and `espresso.fish`. `make install` runs it. An example rather
//! than a subcommand of the gateway: the generators stay out of the
//! installed binary (they are dev-dependencies) and need no crate of
//! their own.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: gen-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(&PathBuf::from(out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-docs: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn generate(out: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let man = out.join("man1");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut written = Vec::new();
    // `espresso.1`, then `espresso-run.1` and the other subcommands'.
    clap_mangen::generate_to(control::cli::Cli::command(), &man)?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    written.extend(pages);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = control::cli::Cli::command();
        written.push(clap_complete::generate_to(
            shell,
            &mut cmd,
            "espresso",
            &completions,
        )?);
    }
    Ok(written)
}
