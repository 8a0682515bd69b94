#pragma once

// One-line logging to stderr, where a SIP003 host collects it. Each call writes one whole line
// with a single write, so lines from worker threads never interleave.

#include <fmt/format.h>

#include <atomic>
#include <exception>
#include <string>
#include <string_view>

namespace kaminari::log {

enum class level : int { error = 0, warn = 1, info = 2, debug = 3 };

namespace detail {
extern std::atomic<int> current_level;
void write_line(level lv, std::string_view text) noexcept;
} // namespace detail

/// Sets the most verbose level that is printed (default: info).
void set_level(level lv) noexcept;

/// Parses `error`, `warn`, `info`, `debug` (case-sensitive); returns false on anything else.
bool parse_level(std::string_view text, level& out) noexcept;

/// The name printed before messages (the program name).
void set_program(std::string_view name) noexcept;

/// What an escaped exception `e` (not null) says, for a log line ("an unknown exception" when
/// it is not a std::exception; empty if even that cannot be allocated).
std::string what(const std::exception_ptr& e) noexcept;

inline bool enabled(level lv) noexcept {
    return static_cast<int>(lv) <= detail::current_level.load(std::memory_order_relaxed);
}

template <class... Args>
void print(level lv, fmt::format_string<Args...> f, Args&&... args) noexcept {
    if (!enabled(lv)) {
        return;
    }
    try {
        detail::write_line(lv, fmt::format(f, std::forward<Args>(args)...));
    } catch (...) {
        // Logging must never take a connection down (bad_alloc while formatting).
    }
}

template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... args) noexcept {
    print(level::error, f, std::forward<Args>(args)...);
}
template <class... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) noexcept {
    print(level::warn, f, std::forward<Args>(args)...);
}
template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args) noexcept {
    print(level::info, f, std::forward<Args>(args)...);
}
template <class... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) noexcept {
    print(level::debug, f, std::forward<Args>(args)...);
}

} // namespace kaminari::log
