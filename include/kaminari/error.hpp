#pragma once

// Errors at the process boundary. Start-up input (argv, environment, the options string,
// certificate files, bind) fails with config_error; network input never throws.

#include <stdexcept>
#include <string>

namespace kaminari {

/// Bad start-up input. The message is one line worded `<section>: <what is wrong>; expected
/// <form>`; `main` prints it after `<program>: error: ` and exits with status 2.
class config_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A start-up failure that is not the user's input (cannot bind, cannot read a file):
/// `main` prints it and exits with status 1.
class startup_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

} // namespace kaminari
