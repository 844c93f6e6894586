"""Commit planning: the articles of one `commit()` call, grouped into Firestore commits.

A commit holds at most 500 writes: one marker per article, plus one write per distinct
publication and per distinct entity document of its articles, whose counts are coalesced
(one `Increment` per document however many articles name it). Articles are packed greedily
in order and an article's writes never straddle two commits, so each commit carries the
`create()` markers of exactly the articles whose counts it adds: all or nothing per article.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.messages import Extraction
from store.firestore.ids import document_id

# Firestore's documented limit of writes per batched write / commit.
MAX_WRITES = 500


@dataclass(slots=True)
class Article:
    """One extraction with the document ids its commit touches."""

    extraction: Extraction
    pub_id: str
    marker_id: str
    entity_ids: list[str]  # entity document ids, one per distinct key

    @property
    def id(self) -> str:
        return self.extraction.id

    def entity_docs(self) -> list[str]:
        """Its entity documents as "pub_id/key_id": one name per document, all publications."""
        return [f"{self.pub_id}/{e}" for e in self.entity_ids]


def articles_of(extractions: Iterable[Extraction]) -> list[Article]:
    """The articles of one `commit()` call, in order; the same id twice counts once."""
    articles: dict[str, Article] = {}
    for extraction in extractions:
        if extraction.id in articles:
            continue
        articles[extraction.id] = Article(
            extraction,
            document_id(extraction.publication),
            document_id(extraction.id),
            [document_id(e.key) for e in extraction.entities],
        )
    return list(articles.values())


def plan_commits(articles: Sequence[Article], max_writes: int = MAX_WRITES) -> list[list[Article]]:
    """Group articles in order into commits of at most `max_writes` writes.

    An article is never split; one that alone needs more than `max_writes` (over ~500
    distinct entities) goes alone in a bigger commit: splitting it would give up its
    atomicity, which is worse. The emulator accepts such commits (checked with 600-700
    writes); that real Firestore does too, limited by the 10 MiB request size rather than a
    write count, is not verified here. If it refuses (INVALID_ARGUMENT), the commit raises
    and that batch is not acknowledged.
    """
    groups: list[list[Article]] = []
    group: list[Article] = []
    docs: set[str] = set()  # publication ids and "pub_id/key_id" of the group so far
    for article in articles:
        new_docs = {article.pub_id, *article.entity_docs()} - docs
        if group and len(group) + len(docs) + 1 + len(new_docs) > max_writes:
            groups.append(group)
            group, docs = [], set()
            new_docs = {article.pub_id, *article.entity_docs()}
        group.append(article)
        docs |= new_docs
    if group:
        groups.append(group)
    return groups


@dataclass(slots=True)
class Counts:
    """The coalesced counts of one commit."""

    # pub id -> [name, articles]
    publications: dict[str, list]
    # "pub_id/key_id" -> [pub_id, key_id, text, label, count]; text/label of the first article
    entities: dict[str, list]


def coalesce(group: Iterable[Article]) -> Counts:
    """One count per publication and per entity document of `group`."""
    publications: dict[str, list] = {}
    entities: dict[str, list] = {}
    for article in group:
        extraction = article.extraction
        pub = publications.get(article.pub_id)
        if pub is None:
            publications[article.pub_id] = [extraction.publication, 1]
        else:
            pub[1] += 1
        for key_id, entity in zip(article.entity_ids, extraction.entities, strict=True):
            path = f"{article.pub_id}/{key_id}"
            row = entities.get(path)
            if row is None:
                entities[path] = [article.pub_id, key_id, entity.text, entity.label, entity.count]
            else:
                row[4] += entity.count
    return Counts(publications, entities)
