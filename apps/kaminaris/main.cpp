#include <kaminari/app.hpp>

int main(int argc, char** argv) {
    return kaminari::app_main(kaminari::role::server, argc, argv);
}
