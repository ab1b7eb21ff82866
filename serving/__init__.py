"""``serve``: a finished run's program behind HTTP. Its options (``options``), the run as served (``loading``), the
request and reply schemas made from the task's fields (``schema``), one answer (``prediction``), the model as
OpenAI's chat API (``chat``), the worker pool that lets the engine batch concurrent requests (``service``), the
Host, token and size checks (``guards``), the request log (``request_log``), the routes (``app``, with
``page.html``) and the server's start and graceful stop (``server``)."""
