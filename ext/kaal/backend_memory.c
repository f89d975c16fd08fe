/* STUB: replaced by the memory backend. */
#include "backend.h"
const kaal_backend_vtable kaal_backend_memory = {.name = "memory"};
