"""What a run reads: data folders and hypothesis files, checked before anything is built.

``inputs.files`` reads one input file safely (a regular file of bounded size,
never a FIFO or a device); ``inputs.checks`` loads and checks every input of a
fit (what ``llmsize validate`` runs). The CSV schemas (``llmsize.inputs.data``) and the hypothesis
schema (``llmsize.inputs.hypothesis``) move here as they are touched.
"""
