"""The hostile suite (issue 22): `app.py --hosted` started in a subprocess with small quotas and attacked
as a stranger would, from several sessions, through raw HTTP (/gradio_api/upload, /gradio_api/call/<name>,
/gradio_api/queue/join) and gradio_client. Each module starts its own server (conftest.server).

    test_texts      server paths typed in every text box; 100k labels and one 2 MB label
    test_images     decode-cost bombs (lossless WebP, palette PNG, RLE8 BMP) alone and zipped, to classify,
                    the index build and the Search query image: < 400 MB peak growth, < 10 s
    test_bytes      a raw 60 MB upload, four concurrent unpacks, the shared quota filled by one visitor
    test_surface    /config, the page and the API listing; hostile and damaged classifier files
    test_lifecycle  SIGTERM, a killed run's leftovers, model reload under 20 visitors, 8 queued jobs
    test_load       locust: the visitors' p95 with one attacker within 3x of without

Environment: HOSTILE_APP_ROOT=<a copy of the repository> attacks that copy's app.py instead of this one
(e.g. `git archive <commit> | tar -x -C /tmp/old` to see what an older commit fails);
EXPLORER_HOSTILE_LOAD_SECONDS sets the length of each locust run (35 s by default).
"""
