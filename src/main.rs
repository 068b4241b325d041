use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = arenaxl::cli::Cli::parse();
    match arenaxl::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
