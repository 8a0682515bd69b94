#pragma once

// The whole program behind kaminaric and kaminaris: arguments, options, listeners, signals.

#include <kaminari/cli.hpp>

namespace kaminari {

/// Runs the program; returns the exit status: 0 after SIGINT/SIGTERM, 1 on a runtime failure
/// to start (bind, files), 2 on bad arguments or options. Never throws.
int app_main(role who, int argc, char** argv) noexcept;

} // namespace kaminari
