/* STUB: replaced by the sqlite backend. */
#include "backend.h"
#ifdef KAAL_HAVE_SQLITE
const kaal_backend_vtable kaal_backend_sqlite = {.name = "sqlite"};
#endif
