fn main() -> std::process::ExitCode {
    neuronmeet::cli::main()
}
