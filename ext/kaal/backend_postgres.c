/* STUB: replaced by the postgres backend. */
#include "backend.h"
#ifdef KAAL_HAVE_POSTGRES
const kaal_backend_vtable kaal_backend_postgres = {.name = "postgres"};
#endif
