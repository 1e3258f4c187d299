//! The `oxmx` command.
fn main() {
    eprintln!("oxmx: no subcommands yet");
    std::process::exit(2);
}
