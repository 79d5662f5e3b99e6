"""The contest around the grader: a contest file (:mod:`.config`), the public/private split of
the hidden sets (:mod:`.split`), the append-only ledger of graded versions (:mod:`.ledger`), the
rules that admit a version or refuse it (:mod:`.rules`), the boards (:mod:`.boards`) and the
organizers' integrity report (:mod:`.integrity`). ``harness contest`` drives them."""
