"""Where the Firestore store keeps things: its collections, and free text made into safe ids.

Layout (the same as the SQLite store's tables):

    publications/{pub}                  {name, articles}
    publications/{pub}/entities/{key}   {text, label, count}
    articles/{id}                       {publication, entities, committed_at, commit}

Publication names and client article ids are free text: "a/b" would be a path, "." and
".." are forbidden ids, "__x__" is reserved. `document_id` percent-encodes every character
except ASCII letters, digits and "-" (so "ABC Science" is "ABC%20Science": stable, readable
in the console, reversible with `name_of`). A name whose encoding is longer than
Firestore's 1,500-byte id limit becomes "~" + a digest of it; "~" is always encoded
otherwise, so the two forms cannot collide. The readable name stays in the publication's
`name` field. Entity keys are hex digests already and come out of the encoder unchanged.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from urllib.parse import quote, unquote

PUBLICATIONS = "publications"
ENTITIES = "entities"
ARTICLES = "articles"

# Firestore's limit on the size of a document id.
MAX_ID_BYTES = 1500


@lru_cache(maxsize=65536)
def document_id(name: str) -> str:
    """A safe, stable Firestore document id for any string (see the module docstring)."""
    # quote() leaves "_.-~" alone; "." / ".." and "__x__" are not valid ids, and "~" marks
    # the digest form, so those are encoded too.
    encoded = quote(name, safe="").replace(".", "%2E").replace("_", "%5F").replace("~", "%7E")
    if not encoded or len(encoded) > MAX_ID_BYTES:
        return "~" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()
    return encoded


def name_of(doc_id: str) -> str:
    """The string `document_id` encoded (not for the digest form of over-long names)."""
    return unquote(doc_id)


def publication_path(pub_id: str) -> str:
    """The path of a publication document, from its document id."""
    return f"{PUBLICATIONS}/{pub_id}"


def entity_path(pub_id: str, key_id: str) -> str:
    """The path of an entity document, from its publication's id and its own."""
    return f"{PUBLICATIONS}/{pub_id}/{ENTITIES}/{key_id}"


def marker_path(marker_id: str) -> str:
    """The path of an article's marker, from its document id."""
    return f"{ARTICLES}/{marker_id}"
